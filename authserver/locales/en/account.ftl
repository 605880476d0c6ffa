# The account pages (/account/…).

account-title = Your account
nav-overview = Overview
nav-profile = Profile
nav-password = Password
nav-security = Security
nav-passkeys = Passkeys
nav-sessions = Sessions
nav-consents = Apps with access
nav-activity = Activity

done-profile = Your profile was saved.
done-email = Your profile was saved. Your new e-mail address is not verified yet.
done-password = Your password was changed. You were signed out everywhere else.
done-totp-removed = Your authenticator app was removed.
done-signed-out = The session was signed out.
done-signed-out-others = You were signed out everywhere else.
done-consent = Access was removed.
done-passkey-added = Passkey added.
done-passkey-removed = Passkey removed.
done-device-forgotten = The device was forgotten. Signing in on it again counts as a new device.

# The overview.
account-username = Username
account-name = Name
account-email = E-mail address
account-not-set = Not set
account-email-unverified = (not verified)
account-two-step = Two-step verification
account-totp-set-up = { $count ->
    [one] Authenticator app set up, 1 recovery code left
   *[other] Authenticator app set up, { $count } recovery codes left
}
account-not-set-up = Not set up
account-sessions = Signed-in sessions
account-nav-label = Your account

# The profile page.
profile-email-unverified = This address is not verified yet.
profile-email-verified = This address is verified.
profile-email-none = No address is set.
profile-email-hint = A new address is not verified until you confirm it.
profile-language = Language
profile-language-default = Browser default
profile-language-hint = The language of these pages and of the e-mails we send you.
profile-save = Save
profile-name-invalid = Name: use at most { $max } characters, without control characters.
profile-email-invalid = E-mail address: this is not a valid email address.
profile-stale = Your profile was changed meanwhile. Reload the page and try again.
profile-language-invalid = Choose one of the languages offered.

# The password page.
password-heading = Change your password
password-intro = Changing your password signs you out everywhere else.
password-current = Current password
password-new = New password
password-confirm = New password again
password-submit = Change password
password-missing = Fill in your current password and the new one twice.
password-wrong-current = Your current password is not correct.
password-mismatch = The new password and its confirmation do not match.
password-too-short = New password: must be at least { $min } characters.
password-too-long = New password: must be at most { $max } characters.
password-breached = New password: it appears in a known data breach. Choose another.
password-refused = The new password was refused. Choose another.

# The security page.
security-mfa-required = Your account requires two-step verification: keep at least one second factor.
security-totp-heading = Authenticator app
security-totp-set-up = { $count ->
    [one] An authenticator app is set up. 1 recovery code is left.
   *[other] An authenticator app is set up. { $count } recovery codes are left.
}
security-new-codes = Create new recovery codes
security-remove-intro = To remove the authenticator app, enter your current password or a code from the app.
security-or-code = Or a code
security-remove-totp = Remove authenticator app
security-scan = Scan this code with an authenticator app, then enter the 6-digit code it shows.
security-no-totp = No authenticator app is set up.
security-set-up-totp = Set up an authenticator app
security-wrong-proof = Enter your current password or a valid code to remove it.
security-last-factor = You cannot remove your last second factor: your account requires two-step verification. Set up another one first.
security-not-enrolled = No authenticator app is set up.
security-already-enrolled = An authenticator app is already set up. Remove it first to set up another.
security-no-enrolment = Start setting up an authenticator app first.

# The recovery codes shown after creating new ones.
recovery-replaced = Any older codes no longer work.
recovery-back = Back to security

# The passkeys (account security and passkeys pages).
passkeys-added-used = Added { $added }, last used { $used }
passkeys-added-unused = Added { $added }, not used yet
passkeys-synced = synced
passkeys-remove = Remove
passkeys-remove-label = Remove passkey { $name }
passkeys-none-yet = You have no passkeys yet.
passkeys-intro = A passkey lets you sign in with your device's screen lock or a security key instead of a password.

# The sessions page.
sessions-heading = Where you are signed in
sessions-this-browser = This browser
sessions-address = Address
sessions-unknown = Unknown
sessions-signed-in = Signed in
sessions-last-activity = Last activity
sessions-sign-out = Sign out
sessions-sign-out-here = Sign out here
sessions-sign-out-others = Sign out everywhere else
sessions-not-found = That session was not found. It may have ended already.
devices-heading = Remembered devices
devices-intro = Browsers you signed in from. A trusted device is not asked for a second step at sign-in until its trust runs out; forgetting a device makes it new again.
devices-none = No remembered devices.
devices-this-browser = This browser
devices-first-seen = First seen
devices-last-seen = Last seen
devices-country = Country
devices-trusted-until = Trusted until
devices-not-trusted = Not trusted
devices-forget = Forget this device
devices-not-found = This device was not found. Perhaps it was already forgotten.
device-on = { $browser } on { $system }
device-unknown = Unknown device

# The apps with access (consents).
consents-allowed = You allowed it to:
consents-remove = Remove access
consents-remove-label = Remove access for { $client }
consents-none = No application has access to your account.
consents-no-client = Choose an application whose access to remove.

# The activity page.
activity-heading = Recent activity
activity-intro = Security events of your account, newest first (at most { $limit }).
activity-when = When
activity-what = What
activity-from = From
activity-none = No activity yet.
event-login-succeeded = Signed in
event-login-failed = Failed sign-in attempt
event-mfa-verified = Two-step verification code accepted
event-mfa-failed = Wrong two-step verification code
event-mfa-enrolled = Authenticator app set up
event-mfa-removed = Authenticator app removed
event-mfa-recovery-code-used = Recovery code used
event-mfa-recovery-codes-regenerated = New recovery codes created
event-mfa-required-changed = Two-step verification requirement changed
event-user-password-changed = Password changed
event-user-password-set = Password set by an administrator
event-user-reauthentication-failed = Wrong current password entered
event-user-email-changed = E-mail address changed
event-user-profile-updated = Profile updated
event-session-revoked = Session signed out
event-session-evicted = Session ended (too many sessions)
event-consent-revoked = App access removed
event-login-impossible-travel = Sign-in from an unlikely distant place (impossible travel)
event-device-forgotten = Remembered device forgotten
event-other = Account event

# This language's name, in this language (the language choice on the profile page).
language-name = English
