"""Real calls through a client that openapi-python-client generated from the
served OpenAPI document (run by .ci/openapi_client.sh, with the generated
package installed): sign in as the CI operator, create tenants, find them in
the tenant list (page by page) and read one back, and see a wrong password
refused as a problem document. Any unexpected answer fails.

    python3 .ci/openapi_client_check.py BASE_URL EMAIL PASSWORD
"""

import sys
import uuid
from http import HTTPStatus

from integro_api_client import AuthenticatedClient, Client
from integro_api_client.api.auth import login, me
from integro_api_client.api.tenants import create_tenant, get_tenant, list_tenants
from integro_api_client.models import LoginRequest, Me, Problem, Tenant, TenantRequest, TokenResponse, User


def check(condition, what):
    if not condition:
        raise SystemExit(f"openapi client: {what}")


def main(base, email, password):
    anonymous = Client(base_url=base, raise_on_unexpected_status=True)

    # Sign in.
    signed_in = login.sync_detailed(client=anonymous, body=LoginRequest(email=email, password=password))
    check(signed_in.status_code == HTTPStatus.OK, f"sign-in answered {signed_in.status_code}: {signed_in.content!r}")
    tokens = signed_in.parsed
    check(isinstance(tokens, TokenResponse), f"sign-in parsed as {type(tokens).__name__}")
    check(tokens.token_type == "Bearer" and tokens.access_token, f"unexpected tokens: {tokens!r}")
    check(tokens.expires_in > 0 and tokens.refresh_token, f"unexpected tokens: {tokens!r}")

    client = AuthenticatedClient(base_url=base, token=tokens.access_token, raise_on_unexpected_status=True)
    who = me.sync(client=client)
    check(isinstance(who, Me) and who.kind == "user" and isinstance(who.user, User), f"/auth/me: {who!r}")
    check(who.user.email == email and who.user.is_operator, f"/auth/me: {who!r}")

    # Create tenants: three, so that a list of two a page takes more than one.
    prefix = f"openapi-client-{uuid.uuid4().hex[:8]}"
    created = []
    for n in range(3):
        name = f"{prefix}-{n}"
        answer = create_tenant.sync_detailed(client=client, body=TenantRequest(name=name))
        check(answer.status_code == HTTPStatus.CREATED, f"creating a tenant answered {answer.status_code}: {answer.content!r}")
        check(isinstance(answer.parsed, Tenant), f"the created tenant parsed as {type(answer.parsed).__name__}")
        check(answer.parsed.name == name, f"the created tenant is named {answer.parsed.name!r}, not {name!r}")
        created.append(answer.parsed)

    # List tenants, page by page, and find each.
    listed, cursor, pages = [], None, 0
    while True:
        kwargs = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = list_tenants.sync(client=client, **kwargs)
        check(page is not None, "listing tenants parsed as nothing")
        check(len(page.items) <= 2, f"a page of at most 2 holds {len(page.items)}")
        listed += page.items
        pages += 1
        cursor = page.next_cursor if isinstance(page.next_cursor, str) else None
        if cursor is None or pages > 1000:
            break
    check(pages >= 2, f"{len(listed)} tenants came in {pages} page(s) of 2")
    check(len({t.id for t in listed}) == len(listed), "a tenant is listed twice across pages")
    names = {t.id: t.name for t in listed}
    for tenant in created:
        check(names.get(tenant.id) == tenant.name, f"the new tenant {tenant.id} is not listed as {tenant.name!r}")
    tenant = created[0]

    # Read it back.
    again = get_tenant.sync(client=client, id=tenant.id)
    check(isinstance(again, Tenant) and again.id == tenant.id and again.name == tenant.name, f"reading a tenant back: {again!r}")

    # A wrong password: a 401 problem document, parsed as one.
    refused = login.sync_detailed(client=anonymous, body=LoginRequest(email=email, password=password + "-wrong"))
    check(refused.status_code == HTTPStatus.UNAUTHORIZED, f"a wrong password answered {refused.status_code}")
    check(isinstance(refused.parsed, Problem) and refused.parsed.status == 401, f"a wrong password: {refused.parsed!r}")

    print(
        f"openapi client: signed in, created {len(created)} tenants, listed {len(listed)} in {pages} pages, "
        f"read one back, wrong password refused ({refused.parsed.code})"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
