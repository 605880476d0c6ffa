# Sign-in through upstream identity providers, and the account page of linked sign-ins.
# { $provider } is the provider's display name from the tenant's configuration.

upstream-or-sign-in-with = Or sign in with
upstream-sign-in-with = Sign in with { $provider }
upstream-the-provider = the identity provider
upstream-failed-title = Sign-in failed
upstream-problem-cancelled = The sign-in at { $provider } was cancelled or refused. Nobody was signed in.
upstream-problem-upstream_error = { $provider } could not sign you in right now. Try again in a moment.
upstream-problem-invalid_response = The answer from { $provider } could not be trusted, so nobody was signed in. Start signing in again.
upstream-problem-stale = This sign-in has expired, was already completed, or was started in another browser. Start signing in again.
upstream-problem-unknown_provider = This way of signing in is not available.
upstream-problem-not_provisioned = Your { $provider } account has no account here. Ask your administrator for access.
upstream-problem-unverified_email = An account here already uses this e-mail address, but { $provider } has not confirmed that the address is yours, so the accounts cannot be linked. Sign in with your password instead.
upstream-problem-cannot_link = Your { $provider } account cannot be linked to an account here automatically. Sign in another way, or ask your administrator.
upstream-problem-not_allowed = Your { $provider } account is not a member of an organisation allowed to sign in here.
upstream-problem-email_unverified = Confirm your e-mail address before you sign in.
upstream-problem-other = Nobody was signed in. Start signing in again.
upstream-back-to-sign-in = Back to sign in
upstream-link-title = Link your account
upstream-link-intro = An account here, { $username }, has the same e-mail address as your { $provider } account. Enter its password to prove it is yours; from then on you can sign in with { $provider }.
upstream-link-intro-passkey = An account here, { $username }, has the same e-mail address as your { $provider } account. Use one of its passkeys to prove it is yours; from then on you can sign in with { $provider }.
upstream-link-wrong-password = Incorrect password.
upstream-link-password = Password of { $username }
upstream-link-submit = Link and sign in
upstream-cancel = Cancel

nav-links = Linked sign-ins
links-removed = The link was removed.
links-last-way = This is your only way to sign in, so it cannot be removed. Set a password first.
links-not-found = That link was not found. It may have been removed already.
links-email = E-mail
links-linked = Linked
links-last-sign-in = Last sign-in
links-remove = Remove
links-none = No identity provider is linked to your account.
