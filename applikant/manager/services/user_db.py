"""`am_user_db`: users, SSH keys, groups, password checks, change subscriptions.

Methods (args is one map; `actor` is `system` or `user-42`, required by the
methods that change something, `system` by default for reads):

| method | args | result | who |
|---|---|---|---|
| add_user | login, display_name?, email?, password?, is_admin? | User | admins |
| get_user | user | User | anyone (email only to admins and the user) |
| list_users | include_disabled?, limit?, cursor? | page of User | admins all; others enabled users, no emails |
| update_user | user, display_name?, email? | User | admins, the user |
| disable_user / enable_user | user | User | admins |
| delete_user | user, transfer_to? | {user, transferred: [full names]} | admins (not themselves) |
| set_admin | user, is_admin | User | admins |
| set_password | user, password (None removes it) | None | admins, the user |
| verify_password | login, password | User or None | system (aw's login) |
| add_key | user, key, title? | SshKey | admins, the user |
| get_key | key (key-7 or SHA256:...) | SshKey | admins, the key's owner |
| list_keys | user, limit?, cursor? | page of SshKey | admins, the user |
| remove_key | key (key-7 or SHA256:...), user? | SshKey | admins, the key's owner |
| find_key | fingerprint, include_disabled? | SshKey or None | admins (af, sshd) |
| all_keys | include_disabled?, limit?, cursor? | page of SshKey, by id | admins (af) |
| touch_key | fingerprint | None | admins (af, on login) |
| touch_keys | fingerprints | None | admins (af: the keys let in since it last said) |
| update_key | key (key-7 or SHA256:...), title | SshKey (same id) | admins, the key's owner |
| create_token | user, title | ApiToken + token (the secret, shown this once) | admins, the user |
| list_tokens | user | [ApiToken] (no secrets) | admins, the user |
| revoke_token | token (token-7), user? | ApiToken | admins, the token's owner |
| verify_token | token | User or None (enabled accounts) | system (aw's API and HTTP clone) |
| as_token | token, service, method, args | {user, ran, answer or error} | system (aw: an API read and its token's check in one call) |
| create_group | name, description? | Group | admins |
| delete_group | group | None | admins |
| get_group / list_groups | group / limit?, cursor? | Group / page of Group | anyone |
| add_member / remove_member | group, user | Group | admins |
| groups_of | user | [str] | anyone |
| subscribe / unsubscribe | service | {"subscribed": bool} | the calling node |

Lists answer one page, `{items, next, total}` (see am_repo_db).

The models of the args and answers are applikant.schema.users (AM_USER_DB).
"""

from __future__ import annotations

from typing import Any

from applikant.manager.errors import BadRequest, Forbidden, NotFound
from applikant.manager.runtime import Actor
from applikant.manager.services.base import Service, dump
from applikant.manager.store import Store
from applikant.node.errors import ServiceError
from applikant.node.node import CallContext
from applikant.schema import users as s
from applikant.schema.users import User


def delete_user(
    store: Store, user: str, transfer_to: str | None, *, actor: str, node: str | None
) -> tuple[User, list[str]]:
    """Delete `user`, first moving its repositories to `transfer_to` (a user or
    group), all in one transaction: it all happens, or nothing does (a name
    already taken at the new owner refuses the whole)."""
    moved = []
    with store.transaction(actor, node):
        if transfer_to is not None:
            target = store.users.get(user)
            if transfer_to.casefold() == target.login.casefold():
                raise BadRequest(f"{target.login}'s repositories cannot go to {target.login}")
            for full in store.users.owned_repos(user):
                name = full.split("/", 1)[1]
                moved.append(
                    store.repos.rename(
                        full, f"{transfer_to}/{name}", actor=actor, node=node
                    ).full_name
                )
        return store.users.delete(user, actor=actor, node=node), moved


class UserDb(Service):
    NAME = "am_user_db"
    SCHEMA = s.AM_USER_DB

    def _shown(self, actor: Actor, user: s.User | dict[str, Any]) -> dict[str, Any]:
        """The user as `actor` may see them: the email only to admins and themself."""
        data = user.model_dump(mode="json") if isinstance(user, s.User) else user
        if not actor.is_admin and data["id"] != actor.id:
            data["email"] = ""
        return data

    # ---- users ------------------------------------------------------------

    async def add_user(self, ctx: CallContext, req: s.AddUser) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "add users")
        fields = req.model_dump(exclude={"actor", "by", "login"})
        user, _ = await self.m.write(
            self.m.writer.users.add, req.login, actor=req.recorded_actor, node=ctx.caller, **fields
        )
        return dump(user)

    async def get_user(self, ctx: CallContext, req: s.UserRef) -> Any:
        actor = self.m.actor(req.actor)
        return self._shown(actor, self.m.reader.users.get(req.user))

    async def list_users(self, ctx: CallContext, req: s.ListUsers) -> Any:
        actor = self.m.actor(req.actor)
        include = req.include_disabled and actor.is_admin
        page = await self.m.read_page(
            lambda store: store.users.page,
            req.limit,
            scan=req.q is not None,
            cursor=req.cursor,
            include_disabled=include,
            q=req.q,
        )
        return page.map(lambda u: self._shown(actor, u)).as_json()

    async def update_user(self, ctx: CallContext, req: s.UpdateUser) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "change the details")
        user, _ = await self.m.write(
            self.m.writer.users.update,
            req.user,
            actor=req.recorded_actor,
            node=ctx.caller,
            display_name=req.display_name,
            email=req.email,
        )
        return dump(user)

    async def disable_user(self, ctx: CallContext, req: s.UserAction) -> Any:
        return await self._flag(ctx, req, self.m.writer.users.disable, "disable accounts")

    async def enable_user(self, ctx: CallContext, req: s.UserAction) -> Any:
        return await self._flag(ctx, req, self.m.writer.users.enable, "enable accounts")

    async def _flag(self, ctx: CallContext, req: s.UserAction, fn: Any, what: str) -> Any:
        self.m.require_admin(self.m.actor(req.actor), what)
        user, _ = await self.m.write(fn, req.user, actor=req.recorded_actor, node=ctx.caller)
        return dump(user)

    async def delete_user(self, ctx: CallContext, req: s.DeleteUser) -> Any:
        actor = self.m.actor(req.actor)
        self.m.require_admin(actor, "delete accounts")
        if self.m.is_self(actor, req.user) or req.user == actor.id:
            raise Forbidden(f"{actor.login} cannot delete their own account; ask another admin")
        (gone, moved), _ = await self.m.write(
            delete_user,
            self.m.writer,
            req.user,
            req.transfer_to,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return {"user": dump(gone), "transferred": moved}

    async def set_admin(self, ctx: CallContext, req: s.SetAdmin) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "grant or take site admin rights")
        user, _ = await self.m.write(
            self.m.writer.users.set_admin,
            req.user,
            req.is_admin,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(user)

    async def set_password(self, ctx: CallContext, req: s.SetPassword) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "set the password")
        await self.m.write(
            self.m.writer.users.set_password,
            req.user,
            req.password,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return None

    async def verify_password(self, ctx: CallContext, req: s.VerifyPassword) -> Any:
        if not self.m.actor(req.actor).is_system:
            raise Forbidden("only the cluster's own services verify passwords")
        user = await self.m.hash_work(self.m.writer.users.verify_password, req.login, req.password)
        return dump(user)

    # ---- keys -------------------------------------------------------------

    async def add_key(self, ctx: CallContext, req: s.AddKey) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "add keys")
        key, _ = await self.m.write(
            self.m.writer.keys.add,
            req.user,
            req.key,
            actor=req.recorded_actor,
            node=ctx.caller,
            title=req.title,
        )
        return dump(key)

    async def get_key(self, ctx: CallContext, req: s.KeyRef) -> Any:
        actor = self.m.actor(req.actor)
        key = self.m.reader.keys.get(req.key)
        if not actor.is_admin and key.user != actor.id:
            raise NotFound(f"{actor.login} has no key {req.key}")
        return dump(key)

    async def list_keys(self, ctx: CallContext, req: s.ListKeys) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "list the keys")
        page = await self.m.read_page(
            lambda store: store.keys.page, req.limit, cursor=req.cursor, user=req.user
        )
        return dump(page)

    async def remove_key(self, ctx: CallContext, req: s.RemoveKey) -> Any:
        actor = self.m.actor(req.actor)
        owner = req.user
        if not actor.is_admin:
            if owner is not None and not self.m.is_self(actor, owner):
                raise Forbidden(f"{actor.login} may remove their own keys only")
            owner = actor.id  # someone else's key is then "not found"
        key, _ = await self.m.write(
            self.m.writer.keys.remove,
            req.key,
            actor=req.recorded_actor,
            node=ctx.caller,
            user=owner,
        )
        return dump(key)

    async def find_key(self, ctx: CallContext, req: s.FindKey) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "look keys up by fingerprint")
        return dump(self.m.reader.keys.find(req.fingerprint, include_disabled=req.include_disabled))

    async def all_keys(self, ctx: CallContext, req: s.AllKeys) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "list every key")
        page = await self.m.read_page(
            lambda store: store.keys.page,
            req.limit,
            cursor=req.cursor,
            include_disabled=req.include_disabled,
        )
        return dump(page)

    async def touch_key(self, ctx: CallContext, req: s.TouchKey) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "record key use")
        await self.m.write_reserved(self.m.writer.keys.touch, req.fingerprint)
        return None

    async def touch_keys(self, ctx: CallContext, req: s.TouchKeys) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "record key use")
        if req.fingerprints:
            await self.m.write_reserved(self.m.writer.keys.touch_many, req.fingerprints)
        return None

    async def update_key(self, ctx: CallContext, req: s.UpdateKey) -> Any:
        actor = self.m.actor(req.actor)
        owner = None if actor.is_admin else actor.id  # someone else's key: "not found"
        key, _ = await self.m.write(
            self.m.writer.keys.update,
            req.key,
            req.title,
            actor=req.recorded_actor,
            node=ctx.caller,
            user=owner,
        )
        return dump(key)

    # ---- API tokens -------------------------------------------------------

    async def create_token(self, ctx: CallContext, req: s.CreateToken) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "make API tokens")
        token, _ = await self.m.write(
            self.m.writer.tokens.create,
            req.user,
            req.title,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(token)

    async def list_tokens(self, ctx: CallContext, req: s.UserRef) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "list the API tokens")
        return dump(self.m.reader.tokens.of(req.user))

    async def revoke_token(self, ctx: CallContext, req: s.RevokeToken) -> Any:
        actor = self.m.actor(req.actor)
        owner = req.user
        if not actor.is_admin:
            if owner is not None and not self.m.is_self(actor, owner):
                raise Forbidden(f"{actor.login} may revoke their own tokens only")
            owner = actor.id  # someone else's token is then "not found"
        token, _ = await self.m.write(
            self.m.writer.tokens.revoke,
            req.token,
            actor=req.recorded_actor,
            node=ctx.caller,
            user=owner,
        )
        return dump(token)

    async def as_token(self, ctx: CallContext, req: s.AsToken) -> Any:
        """verify_token, then `service.method(args)` if `args` name the token's
        user as their actor (am checks that user's rights as on any call):
        aw's read for an API token it has seen, and the token's check, in one
        call. A refusal of the inner call comes back as its [kind, message]."""
        user = await self.verify_token(ctx, req)
        if user is None or req.args.get("actor") != user["id"]:
            return {"user": user, "ran": False}
        handler = self.m.handlers.get(req.service, {}).get(req.method)
        if handler is None or req.method == "as_token":
            raise BadRequest(f"as_token: am has no method {req.service}.{req.method}")
        inner = CallContext(ctx.node, ctx.caller, req.service, req.method)
        try:
            answer = await handler(inner, req.args)
        except ServiceError as exc:
            return {"user": user, "ran": True, "error": [exc.kind, exc.message]}
        return {"user": user, "ran": True, "answer": answer}

    async def verify_token(self, ctx: CallContext, req: s.VerifyToken) -> Any:
        if not self.m.actor(req.actor).is_system:
            raise Forbidden("only the cluster's own services verify API tokens")
        # An indexed lookup by the token's hash on the read connection; the use is
        # written (off the loop) at most once a minute per token.
        found = self.m.reader.tokens.find(req.token)
        if found is None:
            return None
        token, user = found
        if self.m.reader.tokens.touch_due(token):
            await self.m.write_reserved(self.m.writer.tokens.touch, token.id)
        return dump(user)

    # ---- groups -----------------------------------------------------------

    async def create_group(self, ctx: CallContext, req: s.CreateGroup) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "create groups")
        group, _ = await self.m.write(
            self.m.writer.groups.create,
            req.name,
            actor=req.recorded_actor,
            node=ctx.caller,
            description=req.description,
        )
        return dump(group)

    async def delete_group(self, ctx: CallContext, req: s.DeleteGroup) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "delete groups")
        await self.m.write(
            self.m.writer.groups.delete, req.group, actor=req.recorded_actor, node=ctx.caller
        )
        return None

    async def get_group(self, ctx: CallContext, req: s.GroupRef) -> Any:
        self.m.actor(req.actor)
        return dump(self.m.reader.groups.get(req.group))

    async def list_groups(self, ctx: CallContext, req: s.ListGroups) -> Any:
        self.m.actor(req.actor)
        page = await self.m.read_page(lambda store: store.groups.page, req.limit, cursor=req.cursor)
        return dump(page)

    async def add_member(self, ctx: CallContext, req: s.Membership) -> Any:
        return await self._membership(ctx, req, self.m.writer.groups.add_member)

    async def remove_member(self, ctx: CallContext, req: s.Membership) -> Any:
        return await self._membership(ctx, req, self.m.writer.groups.remove_member)

    async def _membership(self, ctx: CallContext, req: s.Membership, fn: Any) -> Any:
        self.m.require_admin(self.m.actor(req.actor), "change group membership")
        group, _ = await self.m.write(
            fn, req.group, req.user, actor=req.recorded_actor, node=ctx.caller
        )
        return dump(group)

    async def groups_of(self, ctx: CallContext, req: s.UserRef) -> Any:
        self.m.actor(req.actor)
        return self.m.reader.groups.of(req.user)

    # ---- change notifications ---------------------------------------------

    async def subscribe(self, ctx: CallContext, req: s.Subscribe) -> Any:
        self.m.subscribers.add(ctx.caller, req.service)
        return {"subscribed": True}

    async def unsubscribe(self, ctx: CallContext, req: s.Subscribe) -> Any:
        ended = self.m.subscribers.remove(ctx.caller, req.service, reason="unsubscribed")
        return {"subscribed": False, "ended": ended}
