//! Gatehouse's own HTML pages, one askama template per page under `templates/` (all extending
//! `base.html`): every interpolated value is HTML-escaped by default and each template is checked at
//! compile time against the fields of its struct here. Handlers fill a struct and hand it to
//! [`crate::web::page`], which adds the status and the page headers.

use askama::Template;

/// A page with one paragraph of text: errors, expired forms, invalid links.
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// `/login`: the sign-in form.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub title: &'a str,
    pub error: Option<&'a str>,
    pub csrf: &'a str,
    pub return_to: &'a str,
    /// The hex hash of the app host's state cookie, or empty.
    pub state: &'a str,
    /// `Continue with …` links, one per identity provider (SPEC §15).
    pub providers: &'a [ProviderButton],
    /// Whether the password form is shown (`password_login`).
    pub password_login: bool,
}

/// A `Continue with <name>` link of the sign-in page.
#[derive(Debug)]
pub struct ProviderButton {
    /// `/login/<id>` with the sign-in's `return_to` and `state`.
    pub href: String,
    pub name: String,
}

/// `/setup`: creating the first owner.
#[derive(Debug, Template)]
#[template(path = "setup.html")]
pub struct Setup<'a> {
    pub title: &'a str,
    pub error: Option<&'a str>,
    pub csrf: &'a str,
    pub token: &'a str,
}

/// `/set-password?token=…`: a one-time link's form (SPEC §12 Users).
#[derive(Debug, Template)]
#[template(path = "set_password.html")]
pub struct SetPassword<'a> {
    pub title: &'a str,
    pub error: Option<&'a str>,
    pub csrf: &'a str,
    pub token: &'a str,
}

/// `GET /__gatehouse/logout` on an app host: the sign-out form.
#[derive(Debug, Template)]
#[template(path = "app_logout.html")]
pub struct AppLogout<'a> {
    pub title: &'a str,
    pub csrf: &'a str,
}

/// The 403 page of an app whose access policy does not list the signed-in account (SPEC §15): who
/// they are signed in as, and *Switch account*, which signs out and starts a sign-in that returns here.
#[derive(Debug, Template)]
#[template(path = "app_not_allowed.html")]
pub struct AppNotAllowed<'a> {
    pub title: &'a str,
    pub email: &'a str,
    pub app: &'a str,
    /// The sign-out form's token, bound to this browser's app session.
    pub csrf: &'a str,
    /// The path (and query) asked for, on this host: where the new sign-in returns.
    pub return_to: &'a str,
}

/// `/__gatehouse/callback` with a ticket bound to another browser: a link to sign in here instead.
#[derive(Debug, Template)]
#[template(path = "other_browser.html")]
pub struct OtherBrowser<'a> {
    pub title: &'a str,
    /// A path on this host, already checked by `web::safe_local_path`.
    pub back: &'a str,
}

/// `GET /oauth/authorize`: the consent form, its request carried in hidden fields.
#[derive(Debug, Template)]
#[template(path = "consent.html")]
pub struct Consent<'a> {
    pub title: &'a str,
    pub client: &'a str,
    pub email: &'a str,
    pub scopes: &'a [String],
    /// The host of the redirect URI the browser will be sent back to.
    pub host: &'a str,
    /// The hidden fields, in order: (name, value).
    pub fields: Vec<(&'a str, &'a str)>,
}

#[cfg(test)]
mod tests;
