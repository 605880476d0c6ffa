# The sign-in pages: sign-in, second factor, enrolment, recovery codes, account chooser,
# consent, sign-out, error page and the passkey buttons.
# Values a user or operator controls (usernames, client and tenant names) are not part
# of these sentences: the templates put them next to the text in their own element.

continue = Continue
close-window = You can close this window.
signed-in-as = Signed in as

error-title = Something went wrong

login-title = Sign in
login-continue-to = to continue to
login-username = Username
login-password = Password
login-submit = Sign in
login-resend-confirmation = Send a new confirmation link
login-forgot-password = Forgot your password?
login-create-account = Create an account

mfa-title = Two-step verification
mfa-intro = Enter the 6-digit code from your authenticator app, or one of your recovery codes.
mfa-intro-or-passkey = Enter the 6-digit code from your authenticator app, or one of your recovery codes, or use your passkey.
mfa-code = Verification code
mfa-verify = Verify
mfa-use-passkey = Use your passkey to continue.
mfa-intro-email = This device is new to your account. We mailed a 6-digit code to your e-mail address: enter it to continue.

enroll-title = Set up two-step verification
enroll-intro = Your account needs a second step. Scan this code with an authenticator app, then enter the 6-digit code it shows.
enroll-qr-alt = QR code for your authenticator app
enroll-key-by-hand = Or enter this key by hand:
enroll-confirm = Confirm
enroll-passkey-heading = Or use a passkey
enroll-passkey-intro = A passkey on this device or a security key can be your second step instead.

recovery-title = Your recovery codes
recovery-heading = Save your recovery codes
recovery-intro = Each code signs you in once if you lose your authenticator. They are shown only now: store them somewhere safe.

signed-in-title = Signed in
signed-in-heading = You are signed in

chooser-title = Choose an account
chooser-other = Use another account

consent-title = Allow access?
consent-asks-to = asks to:
consent-allow = Allow
consent-deny = Deny

logout-title = Sign out
logout-heading = Sign out?
logout-question = Do you want to sign out?
logout-question-user = Do you want to sign out { $username }?
logout-submit = Sign out

signed-out-title = Signed out
signed-out-heading = You have been signed out

passkey-name = Passkey name
passkey-default-name = Passkey
passkey-needs-javascript = Passkeys need JavaScript.
passkey-script-failed = The passkey could not be used.
passkey-script-cancelled = The passkey request was cancelled or timed out.
passkey-script-unavailable = Passkeys are not available.
