"""The whole OAuth flow with Authlib (PyPI) against a running Gatehouse.

Env: GH_CP, GH_APP, GH_CLIENT_ID, GH_CLIENT_SECRET, GH_EMAIL, GH_PASSWORD.
AUTHLIB_INSECURE_TRANSPORT=1 must be set by the caller: Authlib refuses plain HTTP otherwise,
and this local test has no TLS.
"""

import html
import os
import re
import sys
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

cp, app = os.environ["GH_CP"], os.environ["GH_APP"]
client_id, secret = os.environ["GH_CLIENT_ID"], os.environ["GH_CLIENT_SECRET"]
email, password = os.environ["GH_EMAIL"], os.environ["GH_PASSWORD"]
redirect_uri = "http://127.0.0.1:8790/cb"


def check(cond, what):
    if not cond:
        sys.exit(f"check failed: {what}")
    print(f"ok - {what}")


def hidden_fields(page):
    return {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


meta = requests.get(cp + "/.well-known/oauth-authorization-server", timeout=10).json()
sess = OAuth2Session(
    client_id,
    secret,
    scope="hello:read",
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_post",
)
verifier = generate_token(64)
url, state = sess.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)

browser = requests.Session()
r = browser.get(url, allow_redirects=False, headers={"accept": "text/html"})
check(r.status_code == 302 and r.headers["location"].startswith("/login?"), "authorize sends a signed-out browser to the login page")
login = hidden_fields(browser.get(cp + r.headers["location"]).text)
r = browser.post(cp + "/login", data={"email": email, "password": password, **login}, allow_redirects=False)
check(r.status_code == 303, "signed in")
r = browser.get(cp + r.headers["location"], allow_redirects=False)
check(r.status_code == 200 and "wants to act for" in r.text, "the consent screen is shown")
r = browser.post(cp + "/oauth/authorize", data={**hidden_fields(r.text), "decision": "allow"}, allow_redirects=False)
callback = r.headers["location"]
check(callback.startswith(redirect_uri + "?") and "iss=" in callback, "redirected to the callback with iss")

token = sess.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state)
check("access_token" in token and "refresh_token" in token, "code exchanged with PKCE")

who = requests.get(app + "/api/whoami", headers={"authorization": "Bearer " + token["access_token"]}, timeout=10)
check(who.status_code == 200 and who.json()["auth"] == "oauth" and who.json()["client_id"] == client_id, "the app is called through the gateway with the token")

new = sess.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
check(new["refresh_token"] != token["refresh_token"], "refresh rotates the refresh token")

info = sess.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()
check(info["active"] is True and info["client_id"] == client_id, "introspection says active")

r = sess.revoke_token(meta["revocation_endpoint"], token=new["access_token"], token_type_hint="access_token")
check(r.status_code == 200, "revocation accepted")
info = sess.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()
check(info == {"active": False}, "revoked token introspects inactive")
who = requests.get(app + "/api/whoami", headers={"authorization": "Bearer " + new["access_token"]}, timeout=10)
check(who.status_code == 401, "the gateway refuses the revoked token")

cc = OAuth2Session(client_id, secret, scope="hello:read").fetch_token(meta["token_endpoint"], grant_type="client_credentials")
check("access_token" in cc and "refresh_token" not in cc, "client_credentials gives an access token only")
print("authlib: all checks passed")
