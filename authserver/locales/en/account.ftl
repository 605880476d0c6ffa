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
