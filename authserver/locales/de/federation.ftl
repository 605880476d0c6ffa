# Anmeldung über vorgelagerte Identitätsanbieter (siehe en/federation.ftl).

upstream-or-sign-in-with = Oder anmelden mit
upstream-sign-in-with = Mit { $provider } anmelden
upstream-the-provider = dem Identitätsanbieter
upstream-failed-title = Anmeldung fehlgeschlagen
upstream-problem-cancelled = Die Anmeldung bei { $provider } wurde abgebrochen oder abgelehnt. Niemand wurde angemeldet.
upstream-problem-upstream_error = { $provider } konnte Sie gerade nicht anmelden. Versuchen Sie es gleich noch einmal.
upstream-problem-invalid_response = Der Antwort von { $provider } konnte nicht vertraut werden, daher wurde niemand angemeldet. Beginnen Sie die Anmeldung erneut.
upstream-problem-stale = Diese Anmeldung ist abgelaufen, wurde bereits abgeschlossen oder in einem anderen Browser begonnen. Beginnen Sie die Anmeldung erneut.
upstream-problem-unknown_provider = Diese Art der Anmeldung ist nicht verfügbar.
upstream-problem-not_provisioned = Zu Ihrem Konto bei { $provider } gibt es hier kein Konto. Bitten Sie Ihre Administration um Zugang.
upstream-problem-unverified_email = Ein Konto hier verwendet bereits diese E-Mail-Adresse, aber { $provider } hat nicht bestätigt, dass die Adresse Ihnen gehört, daher können die Konten nicht verknüpft werden. Melden Sie sich stattdessen mit Ihrem Passwort an.
upstream-problem-cannot_link = Ihr Konto bei { $provider } kann nicht automatisch mit einem Konto hier verknüpft werden. Melden Sie sich auf andere Weise an oder wenden Sie sich an Ihre Administration.
upstream-problem-not_allowed = Ihr Konto bei { $provider } gehört keiner Organisation an, die sich hier anmelden darf.
upstream-problem-email_unverified = Bestätigen Sie Ihre E-Mail-Adresse, bevor Sie sich anmelden.
upstream-problem-other = Niemand wurde angemeldet. Beginnen Sie die Anmeldung erneut.
upstream-back-to-sign-in = Zurück zur Anmeldung
upstream-link-title = Konto verknüpfen
upstream-link-intro = Ein Konto hier, { $username }, hat dieselbe E-Mail-Adresse wie Ihr Konto bei { $provider }. Geben Sie dessen Passwort ein, um zu zeigen, dass es Ihnen gehört; danach können Sie sich mit { $provider } anmelden.
upstream-link-intro-passkey = Ein Konto hier, { $username }, hat dieselbe E-Mail-Adresse wie Ihr Konto bei { $provider }. Verwenden Sie einen seiner Passkeys, um zu zeigen, dass es Ihnen gehört; danach können Sie sich mit { $provider } anmelden.
upstream-link-wrong-password = Das Passwort ist falsch.
upstream-link-password = Passwort von { $username }
upstream-link-submit = Verknüpfen und anmelden
upstream-cancel = Abbrechen

nav-links = Verknüpfte Anmeldungen
links-removed = Die Verknüpfung wurde entfernt.
links-last-way = Dies ist Ihre einzige Möglichkeit, sich anzumelden, daher kann sie nicht entfernt werden. Legen Sie zuerst ein Passwort fest.
links-not-found = Diese Verknüpfung wurde nicht gefunden. Vielleicht wurde sie bereits entfernt.
links-email = E-Mail
links-linked = Verknüpft
links-last-sign-in = Letzte Anmeldung
links-remove = Entfernen
links-none = Mit Ihrem Konto ist kein Identitätsanbieter verknüpft.
