# The e-mail flows: their pages (password reset, registration, notices) and the mails.
# Values a user or operator controls (usernames, addresses, the tenant's name) are
# variables; the mails' links stay on their own line.

# The "forgot your password" page.
forgot-title = Reset your password
forgot-intro = Enter the e-mail address of your account. We will send you a link to choose a new password.
forgot-email = E-mail address
forgot-submit = Send the link
forgot-back = Back to sign-in

# The new-password page of a reset link.
reset-title = Choose a new password
reset-new = New password
reset-confirm = Repeat the new password
reset-submit = Set the password
reset-note = Setting a new password signs you out everywhere.

# Registration.
register-title = Create an account
register-username = Username
register-email = E-mail address
register-password = Password
register-confirm = Repeat the password
register-submit = Create the account
register-have-account = Already have an account? Sign in

# What went wrong on those forms.
problem-passwords-differ = The two passwords do not match.
problem-password-too-short = The password must be at least { $min } characters.
problem-password-too-long = The password must be at most { $max } characters.
problem-password-breached = This password appears in a known data breach. Choose another.
problem-password-refused = This password was refused. Choose another.
problem-username-missing = Choose a username.
problem-username-invalid = A username has 1 to { $max } characters: letters, digits and . _ - @ +
problem-username-taken = That username is taken. Choose another.
problem-email-invalid = Enter a valid e-mail address.
problem-entries = Check your entries.

# The notices.
notice-go-to-sign-in = Go to sign-in
notice-check-inbox-title = Check your inbox
notice-reset-sent = { $minutes ->
    [one] If an account uses that address, we have sent it a link to choose a new password. The link works once, for 1 minute.
   *[other] If an account uses that address, we have sent it a link to choose a new password. The link works once, for { $minutes } minutes.
}
notice-link-resent = If the account's address still needs confirming, we have sent it a new link.
notice-verified-title = Address confirmed
notice-verified = Thank you: your e-mail address is confirmed.
notice-bad-link-title = This link does not work
notice-bad-link = The link has expired, was already used, or is for an address the account no longer has. Ask for a new one.
notice-password-changed-title = Password changed
notice-password-changed = Your new password is set, and you were signed out everywhere. Sign in with the new password.
notice-registered-verify-title = Confirm your address
notice-registered-verify = Your account is created. Open the link we sent to your e-mail address to confirm it; then you can sign in.
notice-registered-title = Account created
notice-registered = Your account is created and you can sign in. We also sent you a link to confirm your e-mail address.

# The mails.
mail-hello = Hello { $username },
mail-verify-subject = Confirm your e-mail address for { $tenant }
mail-verify-intro = please confirm that { $email } is your e-mail address by opening this link:
mail-verify-button = Confirm my e-mail address
mail-verify-expiry = { $hours ->
    [one] The link works once and expires in 1 hour. If you did not ask for this, ignore this message.
   *[other] The link works once and expires in { $hours } hours. If you did not ask for this, ignore this message.
}
mail-reset-subject = Reset your password for { $tenant }
mail-reset-intro = someone asked to reset the password of your account. To choose a new password, open this link:
mail-reset-button = Choose a new password
mail-reset-expiry = { $minutes ->
    [one] The link works once and expires in 1 minute. Setting a new password signs you out everywhere. If you did not ask for this, ignore this message: your password stays as it is.
   *[other] The link works once and expires in { $minutes } minutes. Setting a new password signs you out everywhere. If you did not ask for this, ignore this message: your password stays as it is.
}
mail-device-subject = New sign-in to your { $tenant } account
mail-device-intro = your account was just signed in to from a device it was not used on before:
mail-device-time = Time: { $time }
mail-device-address = Address: { $ip }
mail-device-browser = Browser: { $agent }
mail-device-unknown = unknown
mail-device-advice = If this was you, there is nothing to do. If not, reset your password now:
mail-device-button = Reset your password now
mail-code-subject = Your sign-in code for { $tenant }
mail-code-intro = to finish signing in on a new device, enter this code on the sign-in page:
mail-code-expiry = { $minutes ->
    [one] The code works once and expires in 1 minute. If you did not try to sign in, someone knows your password: reset it now.
   *[other] The code works once and expires in { $minutes } minutes. If you did not try to sign in, someone knows your password: reset it now.
}
