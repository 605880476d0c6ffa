#!/usr/bin/env python3
"""Signs a user in through a real browser (headless Chromium driven by Selenium): the
authorization request, the sign-in page (`username`, `password`), the consent page
(`decision=allow`), the redirect with a code, and the code redeemed at the token
endpoint with PKCE. Then, with Chromium's virtual authenticator, registers a passkey on
the account security page and signs in with it alone (`acr_values=phr`). It proves that the pages work in a browser with their stable form
field names, cookies and CSP, not only through our own HTTP tests.

    scripts/browser-check.sh             # installs what it needs, then runs this

Needs: a built authserver (AUTHSERVER_BIN), chromium and chromium-driver (Debian's
packages), selenium (PyPI).
"""

import base64
import hashlib
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


# The page with the button `data-action=passkey-register`.
ACCOUNT_SECURITY = os.environ.get("GATEHOUSE_ACCOUNT_SECURITY_PATH", "/account/security")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Callback(http.server.BaseHTTPRequestHandler):
    """The relying party's redirect URI: answers every request with a plain page."""

    def do_GET(self):  # noqa: N802 (the http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"callback reached")

    def log_message(self, *args):
        pass


def main():
    binary = os.environ.get("AUTHSERVER_BIN", "target/debug/authserver")
    work = tempfile.mkdtemp(prefix="gatehouse-browser-")
    port, rp_port = free_port(), free_port()
    # A name, not 127.0.0.1: browsers refuse WebAuthn on IP-address origins.
    issuer = f"http://localhost:{port}"
    redirect = f"http://127.0.0.1:{rp_port}/callback"
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write(f"tenants:\n  - id: main\n    issuer: {issuer}\n    display_name: Browser check\n")
    env = dict(
        os.environ,
        GATEHOUSE_CONFIG=os.path.join(work, "config.yaml"),
        DATABASE_URL=f"sqlite://{work}/authserver.db",
        ENCRYPTION_KEY=secrets.token_hex(32),
        RUST_LOG="warn",
    )

    def cli(*args, stdin=None):
        out = subprocess.run([binary, *args], env=env, input=stdin, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"authserver {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    cli("migrate")
    cli("users", "create", "--username", "alice", "--email", "alice@example.com", "--password-stdin",
        stdin="correct horse battery staple\n")
    client = json.loads(cli("clients", "create", "--id", "web", "--redirect-uri", redirect,
                            "--scopes", "openid profile email"))
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stderr=open(os.path.join(work, "server.log"), "w"))
    rp = http.server.HTTPServer(("127.0.0.1", rp_port), Callback)
    threading.Thread(target=rp.serve_forever, daemon=True).start()
    driver = None
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        authorize = f"{issuer}/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": "web", "redirect_uri": redirect,
            "scope": "openid profile email", "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256",
        })

        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                                  options=options)
        wait = WebDriverWait(driver, 15)
        driver.get(authorize)
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("alice")
        driver.find_element(By.NAME, "password").send_keys("correct horse battery staple")
        driver.find_element(By.NAME, "password").submit()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[name=decision][value=allow]"))).click()
        wait.until(lambda d: d.current_url.startswith(redirect))
        query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
        assert query["state"] == [state], query
        assert query["iss"] == [issuer], query
        code = query["code"][0]

        def redeem(code, verifier):
            basic = base64.b64encode(f"web:{client['client_secret']}".encode()).decode()
            body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": redirect, "code_verifier": verifier}).encode()
            request = urllib.request.Request(f"{issuer}/token", data=body,
                                             headers={"Authorization": f"Basic {basic}"})
            tokens = json.load(urllib.request.urlopen(request, timeout=10))
            payload = tokens["id_token"].split(".")[1]
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

        claims = redeem(code, verifier)
        assert claims["nonce"] == nonce and claims["email"] == "alice@example.com", claims

        # Passkeys, with Chromium's virtual authenticator (the WebAuthn WebDriver
        # extension): register one on the account security page, sign out, sign in with
        # it alone from the sign-in page.
        authenticator = VirtualAuthenticatorOptions()
        authenticator.protocol = VirtualAuthenticatorOptions.Protocol.CTAP2
        authenticator.transport = VirtualAuthenticatorOptions.Transport.INTERNAL
        authenticator.has_resident_key = True
        authenticator.has_user_verification = True
        authenticator.is_user_verified = True
        driver.add_virtual_authenticator(authenticator)
        driver.get(f"{issuer}{ACCOUNT_SECURITY}")
        name = wait.until(ec.presence_of_element_located((By.NAME, "passkey_name")))
        name.clear()
        name.send_keys("Browser check")
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[data-action=passkey-register]"))).click()
        wait.until(lambda d: "Passkey added." in d.page_source)
        assert len(driver.get_credentials()) == 1, "the authenticator holds the new passkey"
        driver.delete_all_cookies()

        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        nonce = secrets.token_urlsafe(16)
        driver.get(f"{issuer}/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": "web", "redirect_uri": redirect,
            "scope": "openid profile email", "state": state, "nonce": nonce, "acr_values": "phr",
            "code_challenge": challenge, "code_challenge_method": "S256",
        }))
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[data-action=passkey-signin]"))).click()
        wait.until(lambda d: d.current_url.startswith(redirect) or "decision" in d.page_source)
        if not driver.current_url.startswith(redirect):
            driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
            wait.until(lambda d: d.current_url.startswith(redirect))
        query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
        claims = redeem(query["code"][0], verifier)
        assert claims["nonce"] == nonce and claims.get("acr") == "phr", claims
        assert "hwk" in claims.get("amr", []) or "swk" in claims.get("amr", []), claims

        # Languages: the application asks for German pages (ui_locales), the browser's
        # own language is English; the sign-in page and its passkey button are German.
        driver.get(f"{issuer}/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": "web", "redirect_uri": redirect,
            "scope": "openid", "state": state, "nonce": nonce, "ui_locales": "fr de",
            "prompt": "login",
            "code_challenge": challenge, "code_challenge_method": "S256",
        }))
        wait.until(ec.presence_of_element_located((By.NAME, "username")))
        html = driver.find_element(By.TAG_NAME, "html")
        assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("de", "ltr"), html.get_attribute("outerHTML")[:200]
        assert driver.find_element(By.TAG_NAME, "h1").text == "Anmelden", driver.page_source
        button = driver.find_element(By.CSS_SELECTOR, "button[data-action=passkey-signin]")
        assert button.text == "Mit einem Passkey anmelden", button.text
        print("browser check passed: sign-in page, consent, redirect with code, token with ID token; "
              "passkey registered on the account page and passwordless sign-in with acr=phr; "
              "German pages for ui_locales=de "
              f"({driver.capabilities.get('browserVersion', 'chromium')})")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=10)
        rp.shutdown()


if __name__ == "__main__":
    main()
