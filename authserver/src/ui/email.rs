//! The e-mail flows' templates: their pages (password reset, registration, notices) and
//! the mails themselves, each a plain-text template (`.txt`: a `subject` and a `body`
//! block, not escaped) and an HTML one (`.html`, autoescaped). Overridable by name from
//! `ui.templates_dir` like every page.

/// The defaults, by the name an override file must have.
pub(super) const DEFAULTS: &[(&str, &str)] = &[
    (
        "password_forgot.html",
        include_str!("../../templates/password_forgot.html"),
    ),
    (
        "password_reset.html",
        include_str!("../../templates/password_reset.html"),
    ),
    (
        "register.html",
        include_str!("../../templates/register.html"),
    ),
    (
        "email_notice.html",
        include_str!("../../templates/email_notice.html"),
    ),
    (
        "mail_verify_email.txt",
        include_str!("../../templates/mail_verify_email.txt"),
    ),
    (
        "mail_verify_email.html",
        include_str!("../../templates/mail_verify_email.html"),
    ),
    (
        "mail_password_reset.txt",
        include_str!("../../templates/mail_password_reset.txt"),
    ),
    (
        "mail_password_reset.html",
        include_str!("../../templates/mail_password_reset.html"),
    ),
    (
        "mail_new_device.txt",
        include_str!("../../templates/mail_new_device.txt"),
    ),
    (
        "mail_new_device.html",
        include_str!("../../templates/mail_new_device.html"),
    ),
    (
        "mail_device_code.txt",
        include_str!("../../templates/mail_device_code.txt"),
    ),
    (
        "mail_device_code.html",
        include_str!("../../templates/mail_device_code.html"),
    ),
];
