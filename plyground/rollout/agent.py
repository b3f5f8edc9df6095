"""How an LLM plays a TextEnv: the chat it sees and how its reply becomes an action."""

from __future__ import annotations

import re
from collections.abc import Callable

from plyground.types import Chat, Message, Turn

ActionParser = Callable[[str], str]

_TAGGED = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_PREFIXED = re.compile(r"^\s*action\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def parse_action(text: str) -> str:
    """The action in a model reply: the last ``<action>...</action>``, else the last
    ``Action: ...`` line, else the whole reply stripped. An empty result is passed to the env,
    which answers it as a malformed action (it never raises)."""
    tagged = _TAGGED.findall(text)
    if tagged:
        return str(tagged[-1]).strip()
    prefixed = _PREFIXED.findall(text)
    if prefixed:
        return str(prefixed[-1]).strip()
    return text.strip()


def build_chat(instructions: str, turns: list[Turn], observation: str, replies: list[str]) -> Chat:
    """The chat for the next generation: instructions as the system message, then each
    observation as a user message and each model reply (verbatim, not the parsed action) as an
    assistant message."""
    chat: Chat = []
    if instructions:
        chat.append(Message("system", instructions))
    for turn, reply in zip(turns, replies, strict=True):
        chat.append(Message("user", turn.observation))
        chat.append(Message("assistant", reply))
    chat.append(Message("user", observation))
    return chat
