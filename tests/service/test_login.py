"""Web page logins: an API key posted once to /login, then a signed session cookie (HttpOnly,
SameSite, Secure over https), CSRF tokens on form posts, and sessions that end with their key."""

from __future__ import annotations

import re

import pytest

from api.store import keys
from api.store.db import session_scope
from api.web.sessions import SECRET_FILE, csrf_token, current_user, login_required
from tests.auth import create_key


@pytest.fixture
def page_app(make_app):
    """An app with two pages behind :func:`login_required` (a page and a form post)."""
    app = make_app()

    @login_required("read")
    def page():
        return f"tenant {current_user().tenant_id}"

    @login_required("admin")
    def admin_page():
        return "admin"

    app.add_url_rule("/page", view_func=page, methods=["GET", "POST"])
    app.add_url_rule("/admin-page", view_func=admin_page)
    app.add_url_rule("/token", view_func=login_required("read")(csrf_token))
    return app


def login(client, key: str, next_url: str = "/page"):
    form = client.get("/login", headers={"Authorization": ""})
    assert form.status_code == 200 and "text/html" in form.content_type
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))[1]
    return client.post("/login", data={"key": key, "csrf_token": token, "next": next_url})


def test_login_sets_a_safe_cookie_and_opens_the_pages(page_app, api_settings):
    key = create_key(api_settings, tenant="web", scopes=("read",))
    client = page_app.test_client()
    client.environ_base.pop("HTTP_AUTHORIZATION")  # a browser: no key header
    assert client.get("/page").status_code == 302  # to the login page
    assert client.get("/page").location.startswith("/login?next=")
    response = login(client, key)
    assert response.status_code == 303 and response.location == "/page"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert key not in cookie  # the session holds the key's id, never the key
    assert client.get("/page").get_data(as_text=True) == "tenant web"
    assert client.get("/admin-page").status_code == 403  # the key's scopes still apply


def test_the_cookie_is_secure_over_https(page_app, api_settings):
    key = create_key(api_settings, scopes=("read",))
    client = page_app.test_client()
    form = client.get("/login", base_url="https://localhost")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))[1]
    response = client.post(
        "/login", data={"key": key, "csrf_token": token}, base_url="https://localhost"
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_form_posts_need_the_csrf_token(page_app, api_settings):
    client = page_app.test_client()
    assert login(client, create_key(api_settings, scopes=("read",))).status_code == 303
    assert client.post("/page", data={}).status_code == 400
    assert client.post("/page", data={"csrf_token": "forged"}).status_code == 400
    token = client.get("/token").get_data(as_text=True)
    assert client.post("/page", data={"csrf_token": token}).status_code == 200
    with page_app.test_request_context():  # templates reach the same helper
        assert page_app.jinja_env.globals["csrf_token"] is csrf_token


def test_a_bad_key_or_an_outside_next_does_not_log_in(page_app, api_settings):
    client = page_app.test_client()
    assert login(client, "aer_abcd1234_" + "x" * 43).status_code == 401
    assert client.get("/page").status_code == 302
    response = login(client, create_key(api_settings), next_url="//evil.example/")
    assert response.location == "/"


def test_revoking_the_key_or_logging_out_ends_the_session(page_app, api_settings):
    key = create_key(api_settings, scopes=("read",))
    client = page_app.test_client()
    login(client, key)
    assert client.get("/page").status_code == 200
    with session_scope(api_settings) as session:
        keys.revoke_key(session, keys.parse_key(key)[0])
    assert client.get("/page").status_code == 302
    other = page_app.test_client()
    login(other, create_key(api_settings, scopes=("read",)))
    token = other.get("/token").get_data(as_text=True)
    assert other.post("/logout", data={"csrf_token": token}).status_code == 303
    assert other.get("/page").status_code == 302


def test_the_session_secret_is_generated_once_into_the_data_dir(make_app, api_settings):
    first = make_app().secret_key
    path = api_settings.data_dir / SECRET_FILE
    assert path.read_text().strip() == first and path.stat().st_mode & 0o077 == 0
    assert make_app().secret_key == first
    assert make_app(secret_key="k" * 40).secret_key == "k" * 40
