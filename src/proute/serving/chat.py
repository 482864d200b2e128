"""``proute chat``: a Gradio page to talk to the routed LLMs as a chosen user.

Pick or type a user id, send a message: the page shows the LLM the router chose for that
user and message, with its score and the task, every LLM's score and probability (softmax),
what the router knows about the user, and the chosen LLM's reply through the upstreams file
(:mod:`proute.serving.upstreams`), its bubble naming the LLM; without upstreams it shows the
decision only. The conversation so far goes to the upstream with the new message; the
router routes the new message alone. A bad request (an unknown user, no message) is said
in the status line; the conversation stays. The router and its encoder are warmed up
before the page is served, so the first message does not wait for them.

Gradio is the optional ``chat`` extra (in ``dev`` too; requirements/constraints.txt pins
the version that fits the stack). The page reaches nothing but its upstreams: Gradio's
analytics and version check are off, and only ``share=True`` (``--share``) goes to the
internet, to Gradio's share server, because that is what it asks for.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from proute.schema import UNKNOWN_USER_AVERAGE
from proute.serving.chat_explain import SCALE, caption, describe_user, scores_table, strip_caption
from proute.serving.upstreams import UpstreamError, answer_text, complete, message_text
from proute.serving.user_ids import text_user_id

API_NAME = "respond"
NO_DECISION = "routed model: (send a message)"


def _history_messages(history: list | None) -> list[dict[str, str]]:
    """The Chatbot's history as OpenAI chat messages (text only, the captions removed)."""
    out = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            text = message_text(m.get("content"))
            if text is None and isinstance(m.get("content"), list):  # Gradio's content parts
                text = "\n".join(
                    str(p.get("text", "")) for p in m["content"] if isinstance(p, dict) and "text" in p
                )
            if text:
                out.append({"role": m["role"], "content": strip_caption(text)})
    return out


def _shown(history: list | None) -> list[dict[str, str]]:
    """The Chatbot's history as it is shown (captions kept)."""
    out = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            text = message_text(m.get("content"))
            if text is None and isinstance(m.get("content"), list):
                text = "\n".join(str(p.get("text", "")) for p in m["content"] if isinstance(p, dict))
            out.append({"role": m["role"], "content": text or ""})
    return out


def make_responder(router, upstreams: dict | None = None, lock: threading.Lock | None = None):
    """``respond(user_id, message, history) -> (history, decision, scores, user, status,
    message box)``: route ``message`` for the user and get the chosen LLM's reply; the
    answer's bubble names the LLM, ``scores`` is every LLM's score (:mod:`.chat_explain`).
    A bad request (no user, no message, an unknown user) keeps the conversation and the
    message, clears the decision and says what is wrong in ``status``."""
    lock = lock or threading.Lock()

    def refused(history, status: str, about: str = "", message: str = ""):
        return _shown(history), NO_DECISION, "", about, f"**error**: {status}", message

    def respond(user_id: Any, message: str, history: list | None):
        if not str(user_id or "").strip():
            return refused(history, "choose or type a user id", message=message)
        if not str(message or "").strip():
            return refused(history, "type a message", message=message)
        try:
            user = text_user_id(user_id, "user id")  # "7" is user 7; "007" is not
        except ValueError as exc:
            return refused(history, str(exc), message=message)
        request = {"query": message, "user_id": user}
        with lock:  # one routing at a time: state that feedback may change is not read mid-update
            error = router.request_error(request)
            if error is not None:
                return refused(history, error.args[0], describe_user(router, user), message)
            d = router.route_single(request)
            about = describe_user(router, user)
        model, score = d["model_name"], float(d["scores"][d["model_name"]])
        info = f"**{model}** (score {score:.3f}, task `{d['task']}`) for user `{user}`"
        if d.get("routed_as") == UNKNOWN_USER_AVERAGE:
            info += " (routed as the population's average user)"
        status = "ok"
        previous = _history_messages(history)
        if upstreams is None:
            reply = f"(routed to {model}; start with --upstreams to get its answer)"
        else:
            body = {"messages": previous + [{"role": "user", "content": message}], "user": str(user)}
            try:
                reply = answer_text(complete(upstreams[model], body))
            except UpstreamError as exc:
                reply, status = f"[error] {exc}", f"**error**: {exc}"
        new = _shown(history) + [
            {"role": "user", "content": message},
            {"role": "assistant", "content": reply + caption(model)},
        ]
        return new, info, scores_table(d["scores"], model), about, status, ""

    return respond


def warm_up(router) -> None:
    """Load the text encoder and run one route now, not on the page's first message."""
    users = list(router.users)
    if users:
        router.route_single({"query": "warm-up", "user_id": users[0]})
    else:
        router.encode(["warm-up"])


def build_app(router, upstreams: dict | None = None, warmup: bool = True):
    """The Gradio Blocks page of ``router`` (no analytics, no version check); ``warmup``:
    load the encoder and route once before the page is served."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by Gradio when it would send them
    import gradio as gr

    if warmup:
        warm_up(router)
    respond = make_responder(router, upstreams)

    def about(user_id):
        try:
            return describe_user(router, text_user_id(user_id, "user id")), ""
        except ValueError:
            return "", ""

    users = [str(u) for u in router.users[:1000]]
    with gr.Blocks(title="proute chat", analytics_enabled=False) as demo:
        gr.Markdown("## proute chat: a personalized router in front of your LLMs")
        with gr.Row():
            user = gr.Dropdown(
                choices=users,
                value=users[0] if users else None,
                allow_custom_value=True,
                label="user id",
                elem_id="user-box",
            )
            decision = gr.Markdown(NO_DECISION, elem_id="decision")
        who = gr.Markdown(about(users[0])[0] if users else "", elem_id="user-info")
        status = gr.Markdown("", elem_id="status")
        chatbot = gr.Chatbot(label="conversation", elem_id="conversation")
        message = gr.Textbox(
            label="message", placeholder="Ask something and press Enter", elem_id="message-box"
        )
        send = gr.Button("Send", variant="primary", elem_id="send-button")
        gr.Markdown(f"Scores for the last message ({SCALE}):")
        scores = gr.Markdown("", elem_id="scores")
        outputs = [chatbot, decision, scores, who, status, message]
        send.click(respond, [user, message, chatbot], outputs, api_name=API_NAME)
        message.submit(respond, [user, message, chatbot], outputs, api_name=f"{API_NAME}_submit")
        user.change(about, [user], [who, status], api_name="describe_user")
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
    from proute.router import load_router
    from proute.serving.upstreams import UpstreamsError, load_upstreams

    router = load_router(router_path)  # a GNN router, or a baseline exported as one
    try:
        upstreams = None if upstreams_path is None else load_upstreams(upstreams_path, router.llms)
    except UpstreamsError as exc:
        raise SystemExit(f"proute chat: {exc}") from None
    build_app(router, upstreams).launch(server_name=host, server_port=port, share=share)
