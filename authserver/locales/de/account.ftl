# Die Kontoseiten (siehe en/account.ftl).

account-title = Ihr Konto
nav-overview = Übersicht
nav-profile = Profil
nav-password = Passwort
nav-security = Sicherheit
nav-passkeys = Passkeys
nav-sessions = Sitzungen
nav-consents = Apps mit Zugriff
nav-activity = Aktivität

done-profile = Ihr Profil wurde gespeichert.
done-email = Ihr Profil wurde gespeichert. Ihre neue E-Mail-Adresse ist noch nicht bestätigt.
done-password = Ihr Passwort wurde geändert. Sie wurden überall sonst abgemeldet.
done-totp-removed = Ihre Authenticator-App wurde entfernt.
done-signed-out = Die Sitzung wurde abgemeldet.
done-signed-out-others = Sie wurden überall sonst abgemeldet.
done-consent = Der Zugriff wurde entfernt.
done-passkey-added = Passkey hinzugefügt.
done-passkey-removed = Passkey entfernt.
