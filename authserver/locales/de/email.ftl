# Die E-Mail-Abläufe: ihre Seiten und die E-Mails (siehe en/email.ftl).

# Die Seite „Passwort vergessen“.
forgot-title = Passwort zurücksetzen
forgot-intro = Geben Sie die E-Mail-Adresse Ihres Kontos ein. Wir senden Ihnen einen Link, mit dem Sie ein neues Passwort wählen.
forgot-email = E-Mail-Adresse
forgot-submit = Link senden
forgot-back = Zurück zur Anmeldung

# Die Seite für das neue Passwort.
reset-title = Neues Passwort wählen
reset-new = Neues Passwort
reset-confirm = Neues Passwort wiederholen
reset-submit = Passwort festlegen
reset-note = Mit einem neuen Passwort werden Sie überall abgemeldet.

# Registrierung.
register-title = Konto erstellen
register-username = Benutzername
register-email = E-Mail-Adresse
register-password = Passwort
register-confirm = Passwort wiederholen
register-submit = Konto erstellen
register-have-account = Sie haben schon ein Konto? Anmelden

# Was in diesen Formularen nicht stimmte.
problem-passwords-differ = Die beiden Passwörter stimmen nicht überein.
problem-password-too-short = Das Passwort muss mindestens { $min } Zeichen haben.
problem-password-too-long = Das Passwort darf höchstens { $max } Zeichen haben.
problem-password-breached = Dieses Passwort kommt in einem bekannten Datenleck vor. Wählen Sie ein anderes.
problem-password-refused = Dieses Passwort wurde abgelehnt. Wählen Sie ein anderes.
problem-username-missing = Wählen Sie einen Benutzernamen.
problem-username-invalid = Ein Benutzername hat 1 bis { $max } Zeichen: Buchstaben, Ziffern und . _ - @ +
problem-username-taken = Dieser Benutzername ist vergeben. Wählen Sie einen anderen.
problem-email-invalid = Geben Sie eine gültige E-Mail-Adresse ein.
problem-entries = Prüfen Sie Ihre Eingaben.

# Die Hinweise.
notice-go-to-sign-in = Zur Anmeldung
notice-check-inbox-title = Sehen Sie in Ihr Postfach
notice-reset-sent = { $minutes ->
    [one] Wenn ein Konto diese Adresse verwendet, haben wir ihr einen Link zum Wählen eines neuen Passworts gesendet. Der Link funktioniert einmal, 1 Minute lang.
   *[other] Wenn ein Konto diese Adresse verwendet, haben wir ihr einen Link zum Wählen eines neuen Passworts gesendet. Der Link funktioniert einmal, { $minutes } Minuten lang.
}
notice-link-resent = Wenn die Adresse des Kontos noch bestätigt werden muss, haben wir ihr einen neuen Link gesendet.
notice-verified-title = Adresse bestätigt
notice-verified = Danke: Ihre E-Mail-Adresse ist bestätigt.
notice-bad-link-title = Dieser Link funktioniert nicht
notice-bad-link = Der Link ist abgelaufen, wurde schon verwendet oder gilt für eine Adresse, die das Konto nicht mehr hat. Fordern Sie einen neuen an.
notice-password-changed-title = Passwort geändert
notice-password-changed = Ihr neues Passwort ist festgelegt, und Sie wurden überall abgemeldet. Melden Sie sich mit dem neuen Passwort an.
notice-registered-verify-title = Bestätigen Sie Ihre Adresse
notice-registered-verify = Ihr Konto ist erstellt. Öffnen Sie den Link, den wir an Ihre E-Mail-Adresse gesendet haben, um sie zu bestätigen; danach können Sie sich anmelden.
notice-registered-title = Konto erstellt
notice-registered = Ihr Konto ist erstellt, und Sie können sich anmelden. Wir haben Ihnen außerdem einen Link gesendet, um Ihre E-Mail-Adresse zu bestätigen.

# Die E-Mails.
mail-hello = Hallo { $username },
mail-verify-subject = Bestätigen Sie Ihre E-Mail-Adresse für { $tenant }
mail-verify-intro = bitte bestätigen Sie, dass { $email } Ihre E-Mail-Adresse ist, indem Sie diesen Link öffnen:
mail-verify-button = Meine E-Mail-Adresse bestätigen
mail-verify-expiry = { $hours ->
    [one] Der Link funktioniert einmal und läuft in 1 Stunde ab. Wenn Sie dies nicht angefordert haben, ignorieren Sie diese Nachricht.
   *[other] Der Link funktioniert einmal und läuft in { $hours } Stunden ab. Wenn Sie dies nicht angefordert haben, ignorieren Sie diese Nachricht.
}
mail-reset-subject = Passwort zurücksetzen für { $tenant }
mail-reset-intro = jemand hat angefordert, das Passwort Ihres Kontos zurückzusetzen. Um ein neues Passwort zu wählen, öffnen Sie diesen Link:
mail-reset-button = Neues Passwort wählen
mail-reset-expiry = { $minutes ->
    [one] Der Link funktioniert einmal und läuft in 1 Minute ab. Mit einem neuen Passwort werden Sie überall abgemeldet. Wenn Sie dies nicht angefordert haben, ignorieren Sie diese Nachricht: Ihr Passwort bleibt, wie es ist.
   *[other] Der Link funktioniert einmal und läuft in { $minutes } Minuten ab. Mit einem neuen Passwort werden Sie überall abgemeldet. Wenn Sie dies nicht angefordert haben, ignorieren Sie diese Nachricht: Ihr Passwort bleibt, wie es ist.
}
mail-device-subject = Neue Anmeldung bei Ihrem Konto für { $tenant }
mail-device-intro = Ihr Konto wurde gerade von einem Gerät aus angemeldet, auf dem es noch nie verwendet wurde:
mail-device-time = Zeit: { $time }
mail-device-address = Adresse: { $ip }
mail-device-browser = Browser: { $agent }
mail-device-unknown = unbekannt
mail-device-advice = Wenn Sie das waren, ist nichts zu tun. Wenn nicht, setzen Sie jetzt Ihr Passwort zurück:
mail-device-button = Passwort jetzt zurücksetzen
mail-code-subject = Ihr Anmeldecode für { $tenant }
mail-code-intro = um die Anmeldung auf einem neuen Gerät abzuschließen, geben Sie diesen Code auf der Anmeldeseite ein:
mail-code-expiry = { $minutes ->
    [one] Der Code gilt einmal und läuft in 1 Minute ab. Wenn Sie sich nicht anmelden wollten, kennt jemand Ihr Passwort: Setzen Sie es jetzt zurück.
   *[other] Der Code gilt einmal und läuft in { $minutes } Minuten ab. Wenn Sie sich nicht anmelden wollten, kennt jemand Ihr Passwort: Setzen Sie es jetzt zurück.
}
