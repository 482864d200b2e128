"""``proute chat``: a Gradio page to talk to the routed LLMs as a chosen user.

Pick or type a user id, send a message: the page shows the LLM the router chose for that
user and message, with its score and the task, and the chosen LLM's reply through the
upstreams file (:mod:`proute.serving.upstreams`); without upstreams it shows the decision only.
The conversation so far goes to the upstream with the new message; the router routes the
new message alone.

Gradio is the optional ``chat`` extra (in ``dev`` too; requirements/constraints.txt pins
the version that fits the stack). The page reaches nothing but its upstreams: Gradio's
analytics and version check are off, and only ``share=True`` (``--share``) goes to the
internet, to Gradio's share server, because that is what it asks for.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from proute.serving.upstreams import UpstreamError, answer_text, complete, message_text
from proute.serving.user_ids import text_user_id

API_NAME = "respond"


def _history_messages(history: list | None) -> list[dict[str, str]]:
    """The Chatbot's history as OpenAI chat messages (text only)."""
    out = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            text = message_text(m.get("content"))
            if text is None and isinstance(m.get("content"), list):  # Gradio's content parts
                text = "\n".join(
                    str(p.get("text", "")) for p in m["content"] if isinstance(p, dict) and "text" in p
                )
            if text:
                out.append({"role": m["role"], "content": text})
    return out


def make_responder(router, upstreams: dict | None = None, lock: threading.Lock | None = None):
    """``respond(user_id, message, history) -> (history, decision markdown, "")``: route
    ``message`` for the user and get the chosen LLM's reply. Errors of the request are
    :class:`ValueError` (Gradio shows them)."""
    lock = lock or threading.Lock()

    def respond(user_id: Any, message: str, history: list | None):
        previous = _history_messages(history)
        user = text_user_id(user_id, "user id")  # "7" is user 7; "007" is not
        request = {"query": message, "user_id": user}
        with lock:  # one routing at a time: state that feedback may change is not read mid-update
            error = router.request_error(request)
            if error is not None:
                raise ValueError(error.args[0])
            d = router.route_single(request)
        model, score = d["model_name"], float(d["scores"][d["model_name"]])
        info = f"**{model}** (score {score:.3f}, task `{d['task']}`) for user `{user}`"
        if upstreams is None:
            reply = f"(routed to {model}; start with --upstreams to get its answer)"
        else:
            body = {"messages": previous + [{"role": "user", "content": message}], "user": str(user)}
            try:
                reply = answer_text(complete(upstreams[model], body))
            except UpstreamError as exc:
                reply = f"[error] {exc}"
        new = previous + [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        return new, info, ""

    return respond


def build_app(router, upstreams: dict | None = None):
    """The Gradio Blocks page of ``router`` (no analytics, no version check)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by Gradio when it would send them
    import gradio as gr

    respond = make_responder(router, upstreams)

    def error(text: str) -> Exception:  # the user's mistake: shown on the page, no traceback logged
        return gr.Error(text, print_exception=False)

    def on_send(user_id, message, history):
        if not str(user_id or "").strip():
            raise error("choose or type a user id")
        if not str(message or "").strip():
            raise error("type a message")
        try:
            return respond(user_id, message, history)
        except ValueError as exc:
            raise error(str(exc)) from None

    users = [str(u) for u in router.users[:1000]]
    with gr.Blocks(title="proute chat", analytics_enabled=False) as demo:
        gr.Markdown("## proute: a personalized router in front of your LLMs")
        with gr.Row():
            user = gr.Dropdown(
                choices=users,
                value=users[0] if users else None,
                allow_custom_value=True,
                label="user id",
            )
            decision = gr.Markdown("routed model: (send a message)")
        chatbot = gr.Chatbot(label="conversation")
        message = gr.Textbox(label="message", placeholder="Ask something and press Enter")
        send = gr.Button("Send", variant="primary")
        outputs = [chatbot, decision, message]
        send.click(on_send, [user, message, chatbot], outputs, api_name=API_NAME)
        message.submit(on_send, [user, message, chatbot], outputs, api_name=f"{API_NAME}_submit")
    return demo


def launch(router_path, upstreams_path=None, host: str = "127.0.0.1", port: int = 7860, share: bool = False):
    """Load the router (and upstreams) and serve the page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SystemExit(
            "proute chat: needs Gradio (the chat extra): "
            "pip install -c requirements/constraints.txt -e '.[chat]'"
        ) from None
    from proute.router import PersonalizedRouter
    from proute.serving.upstreams import UpstreamsError, load_upstreams

    router = PersonalizedRouter.load(router_path)
    try:
        upstreams = None if upstreams_path is None else load_upstreams(upstreams_path, router.llms)
    except UpstreamsError as exc:
        raise SystemExit(f"proute chat: {exc}") from None
    build_app(router, upstreams).launch(server_name=host, server_port=port, share=share)
