# Die Anmeldeseiten (siehe en/pages.ftl).

continue = Weiter
close-window = Sie können dieses Fenster schließen.
signed-in-as = Angemeldet als

error-title = Etwas ist schiefgelaufen

login-title = Anmelden
login-continue-to = weiter zu
login-username = Benutzername
login-password = Passwort
login-submit = Anmelden
login-resend-confirmation = Neuen Bestätigungslink senden
login-forgot-password = Passwort vergessen?
login-create-account = Konto erstellen

mfa-title = Bestätigung in zwei Schritten
mfa-intro = Geben Sie den 6-stelligen Code aus Ihrer Authenticator-App oder einen Ihrer Wiederherstellungscodes ein.
mfa-intro-or-passkey = Geben Sie den 6-stelligen Code aus Ihrer Authenticator-App oder einen Ihrer Wiederherstellungscodes ein, oder verwenden Sie Ihren Passkey.
mfa-code = Bestätigungscode
mfa-verify = Bestätigen
mfa-use-passkey = Verwenden Sie Ihren Passkey, um fortzufahren.
mfa-intro-email = Dieses Gerät ist für Ihr Konto neu. Wir haben Ihnen einen 6-stelligen Code an Ihre E-Mail-Adresse gesendet: Geben Sie ihn ein, um fortzufahren.

enroll-title = Bestätigung in zwei Schritten einrichten
enroll-intro = Ihr Konto braucht einen zweiten Schritt. Scannen Sie diesen Code mit einer Authenticator-App und geben Sie dann den 6-stelligen Code ein, den sie anzeigt.
enroll-qr-alt = QR-Code für Ihre Authenticator-App
enroll-key-by-hand = Oder geben Sie diesen Schlüssel von Hand ein:
enroll-confirm = Bestätigen
enroll-passkey-heading = Oder einen Passkey verwenden
enroll-passkey-intro = Ein Passkey auf diesem Gerät oder ein Sicherheitsschlüssel kann stattdessen Ihr zweiter Schritt sein.

recovery-title = Ihre Wiederherstellungscodes
recovery-heading = Speichern Sie Ihre Wiederherstellungscodes
recovery-intro = Jeder Code meldet Sie einmal an, falls Sie Ihren Authenticator verlieren. Sie werden nur jetzt angezeigt: Bewahren Sie sie an einem sicheren Ort auf.

signed-in-title = Angemeldet
signed-in-heading = Sie sind angemeldet

chooser-title = Konto auswählen
chooser-other = Anderes Konto verwenden

consent-title = Zugriff erlauben?
consent-asks-to = möchte:
consent-allow = Erlauben
consent-deny = Ablehnen

logout-title = Abmelden
logout-heading = Abmelden?
logout-question = Möchten Sie sich abmelden?
logout-question-user = Möchten Sie { $username } abmelden?
logout-submit = Abmelden

signed-out-title = Abgemeldet
signed-out-heading = Sie wurden abgemeldet

passkey-name = Name des Passkeys
passkey-default-name = Passkey
passkey-needs-javascript = Passkeys brauchen JavaScript.
passkey-script-failed = Der Passkey konnte nicht verwendet werden.
passkey-script-cancelled = Die Passkey-Anfrage wurde abgebrochen oder ist abgelaufen.
passkey-script-unavailable = Passkeys sind nicht verfügbar.
