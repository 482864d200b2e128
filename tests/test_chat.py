"""``proute chat`` driven by a real client: the Gradio page (src/proute/serving/chat.py) on
127.0.0.1, called through ``gradio_client`` at its API endpoint, routing with the tiny
trained router and answering through the stub upstream of tests/test_serve.py. The page
must reach nothing beyond loopback: every other connection or name lookup is refused and
recorded (``offline``), and each test checks that none was tried.
"""

import errno
import ipaddress
import socket

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("fastapi")

import test_serve  # noqa: E402
from proute.serving.chat import API_NAME, NO_DECISION, build_app  # noqa: E402
from proute.serving.chat_explain import caption, scores_table  # noqa: E402
from proute.serving.loadtest import free_port  # noqa: E402
from proute.serving.upstreams import message_text  # noqa: E402

# Gradio 6.14's own deprecation noise under pandas 3 and starlette 0.52, not the page's.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    pytest.mark.filterwarnings("ignore:'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated"),
]

# tests/test_serve.py's fixtures: the module's tiny router, the stub upstream, its upstreams.
router_dir, router, stub = test_serve.router_dir, test_serve.router, test_serve.stub
upstreams = test_serve.upstreams


def _loopback(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def offline():
    """The hosts beyond loopback that anything in this process tried to reach (refused)."""
    tried = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            tried.append(address)
            raise OSError(errno.ENETUNREACH, f"the tests reach no network ({address})")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host):
            tried.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"the tests reach no network ({host})")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield tried


@pytest.fixture(scope="module")
def page(offline, router, upstreams):
    """A gradio_client.Client of the chat page on a free loopback port; the page closes after."""
    demo = build_app(router, upstreams)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def send(page, user: str, message: str, history=(), endpoint: str = API_NAME):
    """One message as the page's Send button (or Enter: ``endpoint=API_NAME + "_submit"``):
    ``(history, decision, scores, user description, status, message box)``."""
    return page.predict(user, message, list(history), api_name=f"/{endpoint}")


def shown(history) -> list[tuple[str, str]]:
    """``(role, text)`` of each message the Chatbot shows (Gradio returns content parts)."""
    return [(m["role"], message_text(m["content"])) for m in history]


def decision_for(router, user, message: str) -> tuple[str, str]:
    """The LLM the router chooses for ``user`` and ``message``, and the page's decision text."""
    d = router.route_single({"query": message, "user_id": user})
    llm = d["model_name"]
    return llm, f"**{llm}** (score {d['scores'][llm]:.3f}, task `{d['task']}`) for user `{user}`"


def test_one_exchange_shows_the_routed_model_and_its_answer(page, router, stub, offline):
    calls = stub.server.config.app.state.calls
    before = len(calls)
    message = "What is 2 + 2?"
    llm, decision = decision_for(router, 0, message)

    history, info, scores, about, status, box = send(page, "0", message)
    assert info == decision and status == "ok"  # the routed model, its score and task, for user 0
    answer = f"stub stub-{llm}: {message}"
    assert shown(history) == [("user", message), ("assistant", answer + caption(llm))]  # who answered
    assert box == ""  # the message box is cleared
    assert [(c["model"], c["body"]["user"], c["body"]["messages"]) for c in calls[before:]] == [
        (f"stub-{llm}", "0", [{"role": "user", "content": message}])
    ]
    d = router.route_single({"query": message, "user_id": 0})
    assert scores == scores_table(d["scores"], llm) and all(
        f"| {m} |" in scores or m == llm for m in router.llms
    )
    assert about.startswith("**user `0`**: known (trained)") and "0 feedback events" in about

    # the next message goes to the upstream with the conversation so far (Gradio's format
    # read back, the caption naming the LLM removed)
    follow = "And 3 + 3?"
    llm2, decision2 = decision_for(router, 0, follow)
    history, info, *_ = send(page, "0", follow, history)
    assert info == decision2
    assert shown(history)[2:] == [
        ("user", follow),
        ("assistant", f"stub stub-{llm2}: {follow}" + caption(llm2)),
    ]
    assert calls[-1]["body"]["messages"] == [
        {"role": "user", "content": message},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": follow},
    ]
    assert offline == []


def test_each_user_gets_their_own_model(page, router, offline):
    """Users 0 and 8 are the fixture's opposite cost-efficiency users (p = 0.2 and 1.0);
    when the tiny router sends both to one LLM, another user it routes elsewhere stands in."""
    message = "Write a Python function that reverses a string"
    first = decision_for(router, 0, message)
    other = next((u for u in [8, *router.users] if decision_for(router, u, message)[0] != first[0]), None)
    assert other is not None, "the tiny router sends every user to one LLM: nothing to tell apart"
    for user, endpoint in ((0, API_NAME), (other, f"{API_NAME}_submit")):  # Send button, Enter
        llm, decision = decision_for(router, user, message)
        history, info, _, about, _, _ = send(page, str(user), message, endpoint=endpoint)
        assert info == decision
        assert shown(history)[-1] == ("assistant", f"stub stub-{llm}: {message}" + caption(llm))
        assert f"preference weight p = {[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0][user]:g}" in about
    assert offline == []


@pytest.mark.parametrize(
    "user, message, error",
    [
        ("no-such-user", "hi", "unknown user_id 'no-such-user': this router knows"),
        ("007", "hi", "unknown user_id '007'"),  # not user 7
        (" ", "hi", "choose or type a user id"),
        ("0", "  ", "type a message"),
    ],
    ids=["unknown", "leading-zeros", "no-user", "no-message"],
)
def test_bad_request_keeps_the_conversation_and_says_why(page, router, stub, offline, user, message, error):
    """The status line says what is wrong; the conversation and the typed message stay,
    the previous decision and scores are cleared; no upstream is called."""
    history, *_ = send(page, "0", "What is 2 + 2?")
    calls = stub.server.config.app.state.calls
    before = len(calls)
    kept, info, scores, about, status, box = send(page, user, message, history)
    assert status.startswith(f"**error**: {error}")
    assert shown(kept) == shown(history) and box == message
    assert info == NO_DECISION and scores == ""
    if user == "no-such-user":
        assert about == "**user `no-such-user`**: unknown to the router"
    assert len(calls) == before  # no upstream was called
    assert offline == []


def test_page_warms_up_the_router(router_dir, monkeypatch):
    """build_app routes once before the page is served: the first message does not load
    the encoder."""
    from proute.router import PersonalizedRouter

    fresh = PersonalizedRouter.load(router_dir)
    seen = []
    monkeypatch.setattr(fresh, "route_single", lambda r: seen.append(r) or {})
    build_app(fresh, None)
    assert seen == [{"query": "warm-up", "user_id": fresh.users[0]}]
    assert build_app(fresh, None, warmup=False) is not None and len(seen) == 1
