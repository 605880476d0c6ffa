# Messages the server puts on pages: errors, notices and the words for scopes.

stale-request = This sign-in request has expired, was already completed, or was started in another browser. Go back to the application and start again.
login-failed = Incorrect username or password.
email-unverified = Confirm your e-mail address before you sign in: open the link we sent you, or ask for a new one below.
device-code-limit = This device is new to your account and needs a code by e-mail, but we have sent too many codes to your address in the last hour. Try again later.
wrong-code = That code is not valid. Try again.
passkey-refused = That passkey could not be used. Try again, or use another way to sign in.
passkey-required = The application you are signing in to requires a passkey. Use your passkey to continue.
locked = { $minutes ->
    [one] Too many failed attempts. Try again in 1 minute.
   *[other] Too many failed attempts. Try again in { $minutes } minutes.
}
too-many-requests = Too many requests from your network. Wait a moment, then try again.

form-too-large = The form was too large.
form-expired = This form has expired or did not come from this site. Go back, reload the page and try again.
bad-request = The request could not be processed.
service-unavailable = This service is temporarily unavailable. Please try again in a moment.
server-error = Something went wrong on our side. Please try again later.
unknown-client = The client_id is not registered.
choose-allow-or-deny = Choose Allow or Deny.

scope-openid = Sign you in with your account
scope-profile = See your name and basic profile information
scope-email = See your email address
scope-offline-access = Keep access while you are not using it
scope-other = Access “{ $scope }”

passkey-signin = Sign in with a passkey
passkey-verify = Use a passkey
passkey-enroll = Set up a passkey
passkey-register = Add a passkey
passkey-link = Prove it with a passkey
passkey-unavailable = Passkeys are not available here.
passkey-start-again = Start signing in again.
passkey-sign-in-again = Sign in again to add a passkey.
passkey-none = You have no passkey.
passkey-added = Passkey added.
passkey-removed = Passkey removed.
passkey-not-added = The passkey could not be added. Try again.
passkey-already-registered = That passkey is already registered.
passkey-invalid-name = Name the passkey (1 to 64 characters).
passkey-reauth-to-add = For your security, sign in again to add a passkey.
passkey-last-factor = This is your last second factor, and your account requires one. Add another passkey or an authenticator app first.
passkey-not-found = You have no passkey with that id.

logout-invalid-hint = The sign-out request is invalid: the ID token hint was not issued here.
logout-client-mismatch = The sign-out request is invalid: client_id does not match the ID token hint.
logout-bad-redirect = The sign-out request is invalid: the address to return to is not registered for this application.
