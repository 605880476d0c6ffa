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
done-device-forgotten = Das Gerät wurde vergessen. Eine erneute Anmeldung darauf gilt als neues Gerät.

# Die Übersicht.
account-username = Benutzername
account-name = Name
account-email = E-Mail-Adresse
account-not-set = Nicht festgelegt
account-email-unverified = (nicht bestätigt)
account-two-step = Bestätigung in zwei Schritten
account-totp-set-up = { $count ->
    [one] Authenticator-App eingerichtet, noch 1 Wiederherstellungscode
   *[other] Authenticator-App eingerichtet, noch { $count } Wiederherstellungscodes
}
account-not-set-up = Nicht eingerichtet
account-sessions = Angemeldete Sitzungen
account-nav-label = Ihr Konto

# Die Profilseite.
profile-email-unverified = Diese Adresse ist noch nicht bestätigt.
profile-email-verified = Diese Adresse ist bestätigt.
profile-email-none = Es ist keine Adresse festgelegt.
profile-email-hint = Eine neue Adresse ist erst bestätigt, wenn Sie sie bestätigen.
profile-language = Sprache
profile-language-default = Wie im Browser eingestellt
profile-language-hint = Die Sprache dieser Seiten und der E-Mails, die wir Ihnen senden.
profile-save = Speichern
profile-name-invalid = Name: höchstens { $max } Zeichen, ohne Steuerzeichen.
profile-email-invalid = E-Mail-Adresse: Dies ist keine gültige E-Mail-Adresse.
profile-stale = Ihr Profil wurde inzwischen geändert. Laden Sie die Seite neu und versuchen Sie es erneut.
profile-language-invalid = Wählen Sie eine der angebotenen Sprachen.

# Die Passwortseite.
password-heading = Passwort ändern
password-intro = Wenn Sie Ihr Passwort ändern, werden Sie überall sonst abgemeldet.
password-current = Aktuelles Passwort
password-new = Neues Passwort
password-confirm = Neues Passwort wiederholen
password-submit = Passwort ändern
password-missing = Geben Sie Ihr aktuelles Passwort und zweimal das neue ein.
password-wrong-current = Ihr aktuelles Passwort ist nicht richtig.
password-mismatch = Das neue Passwort und seine Wiederholung stimmen nicht überein.
password-too-short = Neues Passwort: mindestens { $min } Zeichen.
password-too-long = Neues Passwort: höchstens { $max } Zeichen.
password-breached = Neues Passwort: Es kommt in einem bekannten Datenleck vor. Wählen Sie ein anderes.
password-refused = Das neue Passwort wurde abgelehnt. Wählen Sie ein anderes.

# Die Sicherheitsseite.
security-mfa-required = Ihr Konto verlangt die Bestätigung in zwei Schritten: Behalten Sie mindestens einen zweiten Faktor.
security-totp-heading = Authenticator-App
security-totp-set-up = { $count ->
    [one] Eine Authenticator-App ist eingerichtet. Es ist noch 1 Wiederherstellungscode übrig.
   *[other] Eine Authenticator-App ist eingerichtet. Es sind noch { $count } Wiederherstellungscodes übrig.
}
security-new-codes = Neue Wiederherstellungscodes erstellen
security-remove-intro = Um die Authenticator-App zu entfernen, geben Sie Ihr aktuelles Passwort oder einen Code aus der App ein.
security-or-code = Oder ein Code
security-remove-totp = Authenticator-App entfernen
security-scan = Scannen Sie diesen Code mit einer Authenticator-App und geben Sie dann den 6-stelligen Code ein, den sie anzeigt.
security-no-totp = Es ist keine Authenticator-App eingerichtet.
security-set-up-totp = Authenticator-App einrichten
security-wrong-proof = Geben Sie Ihr aktuelles Passwort oder einen gültigen Code ein, um sie zu entfernen.
security-last-factor = Sie können Ihren letzten zweiten Faktor nicht entfernen: Ihr Konto verlangt die Bestätigung in zwei Schritten. Richten Sie zuerst einen weiteren ein.
security-not-enrolled = Es ist keine Authenticator-App eingerichtet.
security-already-enrolled = Es ist bereits eine Authenticator-App eingerichtet. Entfernen Sie sie zuerst, um eine andere einzurichten.
security-no-enrolment = Beginnen Sie zuerst mit dem Einrichten einer Authenticator-App.

# Die Wiederherstellungscodes nach dem Erstellen neuer.
recovery-replaced = Ältere Codes funktionieren nicht mehr.
recovery-back = Zurück zur Sicherheit

# Die Passkeys (Sicherheits- und Passkey-Seite).
passkeys-added-used = Hinzugefügt { $added }, zuletzt verwendet { $used }
passkeys-added-unused = Hinzugefügt { $added }, noch nicht verwendet
passkeys-synced = synchronisiert
passkeys-remove = Entfernen
passkeys-remove-label = Passkey { $name } entfernen
passkeys-none-yet = Sie haben noch keine Passkeys.
passkeys-intro = Mit einem Passkey melden Sie sich mit der Bildschirmsperre Ihres Geräts oder einem Sicherheitsschlüssel an statt mit einem Passwort.

# Die Sitzungsseite.
sessions-heading = Wo Sie angemeldet sind
sessions-this-browser = Dieser Browser
sessions-address = Adresse
sessions-unknown = Unbekannt
sessions-signed-in = Angemeldet
sessions-last-activity = Letzte Aktivität
sessions-sign-out = Abmelden
sessions-sign-out-here = Hier abmelden
sessions-sign-out-others = Überall sonst abmelden
sessions-not-found = Diese Sitzung wurde nicht gefunden. Vielleicht ist sie schon beendet.
devices-heading = Gespeicherte Geräte
devices-intro = Browser, in denen Sie sich angemeldet haben. Auf einem vertrauenswürdigen Gerät wird bei der Anmeldung kein zweiter Schritt verlangt, bis das Vertrauen abläuft; ein vergessenes Gerät gilt wieder als neu.
devices-none = Keine gespeicherten Geräte.
devices-this-browser = Dieser Browser
devices-first-seen = Zuerst gesehen
devices-last-seen = Zuletzt gesehen
devices-country = Land
devices-trusted-until = Vertrauenswürdig bis
devices-not-trusted = Nicht vertrauenswürdig
devices-forget = Dieses Gerät vergessen
devices-not-found = Dieses Gerät wurde nicht gefunden. Vielleicht wurde es schon vergessen.
device-on = { $browser } unter { $system }
device-unknown = Unbekanntes Gerät

# Apps mit Zugriff (Einwilligungen).
consents-allowed = Sie haben ihr erlaubt:
consents-remove = Zugriff entfernen
consents-remove-label = Zugriff für { $client } entfernen
consents-none = Keine Anwendung hat Zugriff auf Ihr Konto.
consents-no-client = Wählen Sie eine Anwendung, deren Zugriff entfernt werden soll.

# Die Aktivitätsseite.
activity-heading = Letzte Aktivität
activity-intro = Sicherheitsereignisse Ihres Kontos, die neuesten zuerst (höchstens { $limit }).
activity-when = Wann
activity-what = Was
activity-from = Von
activity-none = Noch keine Aktivität.
event-login-succeeded = Angemeldet
event-login-failed = Fehlgeschlagener Anmeldeversuch
event-mfa-verified = Bestätigungscode akzeptiert
event-mfa-failed = Falscher Bestätigungscode
event-mfa-enrolled = Authenticator-App eingerichtet
event-mfa-removed = Authenticator-App entfernt
event-mfa-recovery-code-used = Wiederherstellungscode verwendet
event-mfa-recovery-codes-regenerated = Neue Wiederherstellungscodes erstellt
event-mfa-required-changed = Pflicht zur Bestätigung in zwei Schritten geändert
event-user-password-changed = Passwort geändert
event-user-password-set = Passwort von einem Administrator gesetzt
event-user-reauthentication-failed = Falsches aktuelles Passwort eingegeben
event-user-email-changed = E-Mail-Adresse geändert
event-user-profile-updated = Profil aktualisiert
event-session-revoked = Sitzung abgemeldet
event-session-evicted = Sitzung beendet (zu viele Sitzungen)
event-consent-revoked = App-Zugriff entfernt
event-login-impossible-travel = Anmeldung von einem unwahrscheinlich weit entfernten Ort (unmögliche Reise)
event-device-forgotten = Gespeichertes Gerät vergessen
event-other = Kontoereignis

# Der Name dieser Sprache in dieser Sprache (die Sprachwahl auf der Profilseite).
language-name = Deutsch
