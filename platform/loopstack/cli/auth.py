"""`loopstack auth`: API keys and the caller's identity (via the API)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from loopstack.cli.output import console, fail_on_errors
from loopstack.client import LoopstackClient
from loopstack.core.auth import Role

__all__ = ["app"]

app = typer.Typer(help="API keys and roles.", no_args_is_help=True)


@app.command("create-key")
def create_key(
    ctx: typer.Context,
    role: Annotated[Role, typer.Option(help="Role the key carries")],
    name: Annotated[str, typer.Option(help="Who or what holds the key")] = "cli",
) -> None:
    """Create an API key (the first admin key needs no token, from this machine only)."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        key = client.post("/v1/auth/keys", {"role": role.value, "name": name})
    console.print(f"API key {key['key_id']} ({key['role']}, {key['name']}); shown once, store it:")
    typer.echo(key["token"])
    console.print("use it with: export LOOPSTACK_API__TOKEN=<the key>", highlight=False)


@app.command("keys")
def keys(ctx: typer.Context) -> None:
    """List the API keys (never their secrets)."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        found = client.get("/v1/auth/keys")
    table = Table("key id", "role", "name", "created", "by", "revoked")
    for k in found:
        table.add_row(k["key_id"], k["role"], k["name"], k["created_at"], k["created_by"],
                      k["revoked_at"] or "-")  # fmt: skip
    console.print(table)


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="Key id")]) -> None:
    """Revoke an API key at once."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        client.post(f"/v1/auth/keys/{key_id}/revoke")
    console.print(f"API key {key_id} revoked")


@app.command("whoami")
def whoami(ctx: typer.Context) -> None:
    """Who the API takes you for, with which roles."""
    with fail_on_errors(), LoopstackClient.from_settings(ctx.obj) as client:
        me = client.get("/v1/auth/whoami")
    console.print(f"{me['subject']} ({me['kind']}): {', '.join(me['roles']) or 'no role'}")
