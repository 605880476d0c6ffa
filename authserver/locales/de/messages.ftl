# Meldungen des Servers auf den Seiten (siehe en/messages.ftl).

stale-request = Diese Anmeldeanfrage ist abgelaufen, wurde bereits abgeschlossen oder in einem anderen Browser begonnen. Kehren Sie zur Anwendung zurück und beginnen Sie erneut.
login-failed = Benutzername oder Passwort ist falsch.
email-unverified = Bestätigen Sie Ihre E-Mail-Adresse, bevor Sie sich anmelden: Öffnen Sie den Link, den wir Ihnen gesendet haben, oder fordern Sie unten einen neuen an.
device-code-limit = Dieses Gerät ist für Ihr Konto neu und braucht einen Code per E-Mail, aber wir haben in der letzten Stunde zu viele Codes an Ihre Adresse gesendet. Versuchen Sie es später erneut.
wrong-code = Dieser Code ist nicht gültig. Versuchen Sie es erneut.
passkey-refused = Dieser Passkey konnte nicht verwendet werden. Versuchen Sie es erneut oder melden Sie sich auf andere Weise an.
passkey-required = Die Anwendung, bei der Sie sich anmelden, verlangt einen Passkey. Verwenden Sie Ihren Passkey, um fortzufahren.
locked = { $minutes ->
    [one] Zu viele Fehlversuche. Versuchen Sie es in 1 Minute erneut.
   *[other] Zu viele Fehlversuche. Versuchen Sie es in { $minutes } Minuten erneut.
}
too-many-requests = Zu viele Anfragen aus Ihrem Netzwerk. Warten Sie einen Moment und versuchen Sie es dann erneut.

form-too-large = Das Formular war zu groß.
form-expired = Dieses Formular ist abgelaufen oder stammt nicht von dieser Website. Gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es erneut.
bad-request = Die Anfrage konnte nicht verarbeitet werden.
service-unavailable = Dieser Dienst ist vorübergehend nicht verfügbar. Bitte versuchen Sie es gleich noch einmal.
server-error = Bei uns ist etwas schiefgelaufen. Bitte versuchen Sie es später erneut.
unknown-client = Die client_id ist nicht registriert.
choose-allow-or-deny = Wählen Sie „Erlauben“ oder „Ablehnen“.

scope-openid = Sie mit Ihrem Konto anmelden
scope-profile = Ihren Namen und grundlegende Profilangaben sehen
scope-email = Ihre E-Mail-Adresse sehen
scope-offline-access = Zugriff behalten, während Sie es nicht verwenden
scope-other = Zugriff auf „{ $scope }“

passkey-signin = Mit einem Passkey anmelden
passkey-verify = Einen Passkey verwenden
passkey-enroll = Einen Passkey einrichten
passkey-register = Einen Passkey hinzufügen
passkey-link = Mit einem Passkey bestätigen
passkey-unavailable = Passkeys sind hier nicht verfügbar.
passkey-start-again = Beginnen Sie die Anmeldung erneut.
passkey-sign-in-again = Melden Sie sich erneut an, um einen Passkey hinzuzufügen.
passkey-none = Sie haben keinen Passkey.
passkey-added = Passkey hinzugefügt.
passkey-removed = Passkey entfernt.
passkey-not-added = Der Passkey konnte nicht hinzugefügt werden. Versuchen Sie es erneut.
passkey-already-registered = Dieser Passkey ist bereits registriert.
passkey-invalid-name = Geben Sie dem Passkey einen Namen (1 bis 64 Zeichen).
passkey-reauth-to-add = Melden Sie sich zu Ihrer Sicherheit erneut an, um einen Passkey hinzuzufügen.
passkey-last-factor = Dies ist Ihr letzter zweiter Faktor, und Ihr Konto verlangt einen. Fügen Sie zuerst einen weiteren Passkey oder eine Authenticator-App hinzu.
passkey-not-found = Sie haben keinen Passkey mit dieser ID.

logout-invalid-hint = Die Abmeldeanfrage ist ungültig: Der ID-Token-Hinweis wurde nicht hier ausgestellt.
logout-client-mismatch = Die Abmeldeanfrage ist ungültig: Die client_id passt nicht zum ID-Token-Hinweis.
logout-bad-redirect = Die Abmeldeanfrage ist ungültig: Die Rücksprungadresse ist für diese Anwendung nicht registriert.
