"""A chat box for a real model: type a message, press Send, watch the reply arrive piece by piece.

`llm_chat_widget(conversation)` wraps a `course_lib.assistant.Conversation` (SmolLM2-135M-Instruct in
notebook 13, or any model and tokenizer it accepts) in ipywidgets: a text box, Send and Reset buttons,
the conversation so far, and a status line. The reply is written into the conversation while
`Conversation.stream` yields it, so a reader sees the model type. `transcript(messages)` is the same
conversation as plain text: the static fallback a notebook prints for readers of the site, where
widgets do not run.

Leaves out: editing earlier turns, stopping a reply half-way (the kernel is busy while it streams),
changing the sampling settings from the box (make a new `Conversation` for that). See notebook 13.
"""

from __future__ import annotations

import html
import time
from typing import Any, Sequence

__all__ = ["llm_chat_widget", "transcript", "transcript_html"]

_ROLE_COLOURS = {"system": "#777", "user": "#1f4e9a", "assistant": "#1b6b1b"}


def _check_messages(messages: Sequence[dict]) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be a dict with str 'role' and 'content', got {m!r}")
    return list(messages)


def transcript(messages: Sequence[dict]) -> str:
    """A conversation as plain text, one `role> content` block per turn.

    >>> transcript([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    'user> Hi\\nassistant> Hello!'
    See notebook 13.
    """
    return "\n".join(f"{m['role']}> {m['content']}" for m in _check_messages(messages))


def transcript_html(messages: Sequence[dict], pending: str | None = None) -> str:
    """A conversation as HTML (roles coloured, text escaped); `pending` is an assistant reply still being written.

    See notebook 13.
    """
    rows = []
    for m in _check_messages(messages):
        colour = _ROLE_COLOURS.get(m["role"], "#000")
        rows.append(f"<div style='margin:2px 0'><b style='color:{colour}'>{html.escape(m['role'])}:</b> "
                    f"<span style='white-space:pre-wrap'>{html.escape(m['content'])}</span></div>")
    if pending is not None:
        rows.append(f"<div style='margin:2px 0'><b style='color:{_ROLE_COLOURS['assistant']}'>assistant:</b> "
                    f"<span style='white-space:pre-wrap'>{html.escape(pending)}</span>▌</div>")
    return "<div style='font-family:sans-serif'>" + "".join(rows) + "</div>" if rows else "<i>Say something.</i>"


def llm_chat_widget(conversation: Any, title: str | None = None) -> Any:
    """An ipywidgets chat with `conversation` (a `course_lib.assistant.Conversation`): text box, Send, Reset.

    Send streams the reply into the conversation view as the model writes it; Reset forgets the
    conversation (`conversation.reset()`). Returns a VBox; `.text`, `.send_button`, `.reset_button`,
    `.view` (the HTML of the conversation), `.status` and `.conversation` are attached for tests and
    for code that drives it. See notebook 13.
    """
    import ipywidgets as W

    for attr in ("stream", "reset", "messages"):
        if not hasattr(conversation, attr):
            raise TypeError(f"conversation must be a course_lib.assistant.Conversation (it needs .{attr}), "
                            f"got {type(conversation).__name__}")
    if title is None:
        how = "greedy" if getattr(conversation, "greedy", False) else (
            f"temperature {getattr(conversation, 'temperature', '?')}, top-p {getattr(conversation, 'top_p', None)}")
        title = f"Chat with the model ({how}, at most {getattr(conversation, 'max_new_tokens', '?')} new tokens a reply)"
    header = W.HTML(f"<b>{html.escape(title)}</b>")
    text = W.Text(placeholder="Ask something, e.g. What is the capital of France?", description="You:",
                  layout=W.Layout(width="70%"))
    send = W.Button(description="Send", button_style="primary", tooltip="send the message and stream the reply")
    reset = W.Button(description="Reset", tooltip="forget the conversation")
    view = W.HTML(transcript_html(conversation.messages))
    status = W.Label("")

    def on_send(_: Any = None) -> None:
        message = text.value.strip()
        if not message or send.disabled:
            return
        send.disabled = True
        text.value = ""
        reply, start = "", time.perf_counter()
        try:
            for piece in conversation.stream(message):  # conversation.messages now ends with the user's turn
                reply += piece
                view.value = transcript_html(conversation.messages, pending=reply)
            status.value = f"reply written in {time.perf_counter() - start:.1f} s"
        except ValueError as exc:  # e.g. the conversation no longer fits in the context: say so in the box
            status.value = f"error: {exc}"
        finally:
            send.disabled = False
        view.value = transcript_html(conversation.messages)

    def on_reset(_: Any = None) -> None:
        conversation.reset()
        view.value = transcript_html(conversation.messages)
        status.value = "conversation cleared"

    send.on_click(on_send)
    reset.on_click(on_reset)
    ui = W.VBox([header, W.HBox([text, send, reset]), view, status])
    ui.text, ui.send_button, ui.reset_button, ui.view, ui.status, ui.conversation = text, send, reset, view, status, conversation
    return ui
