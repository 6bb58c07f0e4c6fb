"""`am_user_db`: users, SSH keys, API tokens, groups; and the REST bodies of the
same operations (`POST /api/users` sends `NewUser`, am's `add_user` takes
`AddUser`, which is `NewUser` with the actor).

Stable ids are strings with a kind prefix (`user-42`, `key-7`, `group-3`,
`token-9`): they survive renames and are what forced-command lines and audit
entries refer to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .base import Body, Mutation, Op, Page, Paged, Read, Req, Result

TOKEN_TITLE_MAX = 100
"""The longest API token title am accepts."""

# ---- results ------------------------------------------------------------------


class User(Result):
    """An account. `disabled` accounts can neither log in nor use their keys."""

    id: str
    login: str
    display_name: str
    email: str
    is_admin: bool
    disabled: bool
    has_password: bool
    created_at: datetime


class SshKey(Result):
    """A validated public key; `public_key` is the normalised `type base64 comment` line."""

    id: str
    user: str
    login: str
    title: str
    key_type: str
    bits: int
    fingerprint: str
    public_key: str
    created_at: datetime
    last_used_at: datetime | None


class ApiToken(Result):
    """A personal API token, without its secret (only a hash of it is kept)."""

    id: str
    user: str
    login: str  # the user's
    title: str
    created_at: datetime
    last_used_at: datetime | None


class NewApiToken(ApiToken):
    """The answer to create_token: the only time the secret `token` is shown."""

    token: str = Field(repr=False)


class Group(Result):
    """A team. Members are listed by login, sorted case-insensitively."""

    id: str
    name: str
    description: str
    members: list[str]
    created_at: datetime


# ---- bodies: what people send, through aw's API or the admin CLI ----------------


class NewUser(Body):
    """A new account (`POST /api/users`); without a password it uses SSH keys only."""

    login: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=128)
    email: str = Field(default="", max_length=254)
    password: str | None = Field(default=None, max_length=1024, repr=False)
    is_admin: bool = False


class UserChanges(Body):
    """Changes to an account's details; None leaves a field as it is."""

    display_name: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=254)


class UserPatch(UserChanges):
    """`PATCH /api/users/{id}`: the details, a new password, and (site admins
    only) the two flags."""

    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(default=None, max_length=1024, repr=False)


class DeletedUser(Result):
    """The answer to delete_user: the account as it was, and where its
    repositories went (their new full names), if they were transferred."""

    user: User
    transferred: list[str]


class NewKey(Body):
    """A public key to register (`POST /api/users/{id}/keys`); the title
    defaults to the key's comment."""

    key: str
    title: str | None = Field(default=None, max_length=200)


class KeyTitle(Body):
    title: str = Field(min_length=1, max_length=128)


class KeyPut(KeyTitle):
    """`PUT /api/users/{id}/keys/{kid}`: a new title; `key`, if sent, must be
    the key's own material (a key's material never changes)."""

    key: str | None = None


class NewToken(Body):
    """A new API token (`POST /api/users/{id}/tokens`): its title says what uses it."""

    title: str = Field(min_length=1, max_length=TOKEN_TITLE_MAX)


class NewGroup(Body):
    """A new group (`POST /api/groups`)."""

    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=1024)


# ---- requests of am_user_db ------------------------------------------------------


class AddUser(NewUser, Mutation):
    pass


class UserRef(Read):
    user: str


class ListUsers(Read, Paged):
    """Users by login; `q` searches logins and display names."""

    include_disabled: bool = True
    q: str | None = Field(default=None, max_length=100)


class ListKeys(UserRef, Paged):
    pass


class UpdateUser(UserChanges, Mutation):
    user: str


class UserAction(Mutation):
    user: str


class DeleteUser(Mutation):
    """Delete an account; `transfer_to` (a user or group) takes its
    repositories first, else it must own none."""

    user: str
    transfer_to: str | None = Field(default=None, max_length=64)


class SetAdmin(Mutation):
    user: str
    is_admin: bool


class SetPassword(Mutation):
    user: str
    password: str | None = Field(repr=False)


class VerifyPassword(Read):
    login: str
    password: str = Field(repr=False)


class AddKey(NewKey, Mutation):
    user: str


class RemoveKey(Mutation):
    key: str
    user: str | None = None


class KeyRef(Read):
    key: str


class FindKey(Read):
    fingerprint: str
    include_disabled: bool = False


class AllKeys(Read, Paged):
    include_disabled: bool = False


class TouchKey(Read):
    fingerprint: str


class TouchKeys(Read):
    """Keys used since af last said (af batches them): their last use is now."""

    fingerprints: list[str] = Field(max_length=1000)


class UpdateKey(KeyTitle, Mutation):
    key: str  # its id (key-7) or fingerprint


class CreateToken(NewToken, Mutation):
    user: str


class RevokeToken(Mutation):
    token: str
    user: str | None = None


class VerifyToken(Read):
    token: str = Field(repr=False)


class AsToken(VerifyToken):
    """`service.method(args)` asked as the user an API token stands for."""

    service: str = Field(max_length=64)
    method: str = Field(max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class TokenCall(Result):
    """The answer to as_token: the token's user (None: unknown or revoked, or
    the account disabled), and whether the call ran: only when `args` named
    that very user as their actor. Its answer, or its refusal as [kind, message]."""

    user: User | None = None
    ran: bool = False
    answer: Any = None
    error: list[str] | None = None


class CreateGroup(NewGroup, Mutation):
    pass


class GroupRef(Read):
    group: str


class ListGroups(Read, Paged):
    pass


class DeleteGroup(Mutation):
    group: str


class Membership(Mutation):
    group: str
    user: str


class Subscribe(Req):
    service: str = Field(min_length=1, max_length=128)


AM_USER_DB: dict[str, Op] = {
    "add_user": Op(AddUser, User),
    "get_user": Op(UserRef, User),
    "list_users": Op(ListUsers, Page[User]),
    "update_user": Op(UpdateUser, User),
    "disable_user": Op(UserAction, User),
    "enable_user": Op(UserAction, User),
    "set_admin": Op(SetAdmin, User),
    "delete_user": Op(DeleteUser, DeletedUser),
    "set_password": Op(SetPassword, None),
    "verify_password": Op(VerifyPassword, User | None),
    "add_key": Op(AddKey, SshKey),
    "get_key": Op(KeyRef, SshKey),
    "list_keys": Op(ListKeys, Page[SshKey]),
    "remove_key": Op(RemoveKey, SshKey),
    "find_key": Op(FindKey, SshKey | None),
    "all_keys": Op(AllKeys, Page[SshKey]),
    "touch_key": Op(TouchKey, None),
    "touch_keys": Op(TouchKeys, None),
    "update_key": Op(UpdateKey, SshKey),
    "create_token": Op(CreateToken, NewApiToken),
    "list_tokens": Op(UserRef, list[ApiToken]),
    "revoke_token": Op(RevokeToken, ApiToken),
    "verify_token": Op(VerifyToken, User | None),
    "as_token": Op(AsToken, TokenCall),
    "create_group": Op(CreateGroup, Group),
    "delete_group": Op(DeleteGroup, None),
    "get_group": Op(GroupRef, Group),
    "list_groups": Op(ListGroups, Page[Group]),
    "add_member": Op(Membership, Group),
    "remove_member": Op(Membership, Group),
    "groups_of": Op(UserRef, list[str]),
    "subscribe": Op(Subscribe, dict),
    "unsubscribe": Op(Subscribe, dict),
}
"""Every method of am_user_db: its request model and its answer."""
