"""UI pieces every page shares: loading a model with visible progress, and its credits line."""
import threading
import uuid
from contextlib import contextmanager

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core import access, files
from core.registry import READY, SlotError, registry

_shell = threading.local()  # each script run has its own thread


@contextmanager
def inside_app_shell():
    """app.py runs the page inside this, so a page can tell it was reached through app.py."""
    _shell.active = True
    try:
        yield
    finally:
        _shell.active = False


def app_shell() -> None:
    """Call first on every page. Streamlit starts each process in its legacy `pages/` folder mode and
    leaves it only when app.py calls st.navigation, so on a fresh server the first visitors who follow
    deep links (say /models) run that page alone: without app.py's page config, navigation, sidebar and
    sign-in, and with every file in pages/ listed as a page. Such a run leaves that mode and reruns
    through app.py, which resolves the same URL to the same page. Decided per run, not from the global
    flag: with many first visitors at once, only one of them sees the flag still set."""
    if not getattr(_shell, "active", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def ensure_model(slot: str) -> bool:
    """Load a slot on first use inside a status box; on failure show why and how to fix it.
    The load runs in the registry's own background thread (registry.prepare): this run only watches it, so
    a visitor who closes the tab or presses Stop mid-way leaves it running for the next visitor.
    The box sits in a placeholder that every run renders, loaded or not, so the elements below keep
    their place in the page: otherwise the run after a load would remount them (tabs jump back)."""
    holder = st.empty()
    if registry.state(slot).state == READY:
        return True
    title = registry.spec(slot).title
    try:
        with holder.status(f"Loading {title}…") as box:
            while not registry.wait(slot, timeout=0.5):
                box.update(label=registry.state(slot).progress or f"Loading {title}…")
            box.update(label=f"{title} is ready", state="complete", expanded=False)
        holder.empty()  # loaded: the box goes (it stayed on the page until the next rerun)
        return True
    except SlotError as exc:
        holder.error(f"**{title} is unavailable.** {exc.reason}.\n\n**Fix:** {exc.fix}", icon=":material/error:")
        return False


def sample_or_own_model(slot: str, choices: tuple[str, str], key: str, train_own, own_state: str, prompt: str):
    """The demo's model: the registry slot trained on the sample data or, when the visitor picks their own
    data (the second choice), the model their `train_own()` put in st.session_state[own_state]; until there
    is one, the page stops with `prompt`."""
    sample, own = choices
    if st.segmented_control("Data", [sample, own], default=sample, key=key) == own:
        train_own()
        model = st.session_state.get(own_state)
        if model is None:
            st.info(prompt)
            st.stop()
        return model
    if not ensure_model(slot):
        st.stop()
    return registry.counted(slot)  # its calls count on the Models page like every other model's


PARSED_KEPT = 4  # parsed uploads each session keeps (the most recently used)


def parsed_once(upload, parse):
    """parse(data, name) for this uploaded file once: reruns (every click on the page) reuse the result, kept
    in session state under the file's upload id (a new upload of the same file is a new id). An exception is
    kept too, and raised again. At most PARSED_KEPT results per session."""
    kept = st.session_state.setdefault("parsed_uploads", {})
    key = (upload.file_id, getattr(parse, "__qualname__", repr(parse)))
    if key not in kept:
        try:
            kept[key] = (True, parse(upload.getvalue(), upload.name))
        except (files.UploadError, ValueError) as exc:
            kept[key] = (False, exc)
        while len(kept) > PARSED_KEPT:
            kept.pop(next(iter(kept)))
    else:
        kept[key] = kept.pop(key)  # the most recently used goes last
    ok, result = kept[key]
    if not ok:
        raise result
    return result


def read_uploaded_csv(upload, what: str = ""):
    """(table of strings, notices) from an uploaded CSV via core.files.read_csv (parsed once per file, not on
    every rerun), or (None, []) after showing why it cannot be read. The caller shows the notices where it
    wants them; `what` names the file in every message when a page takes several."""
    prefix = f"{what}: " if what else ""
    try:
        frame, notices = parsed_once(upload, files.read_csv)
    except files.UploadError as exc:
        st.error(prefix + str(exc), icon=":material/error:")
        return None, []
    return frame, [prefix + notice for notice in notices]


def model_credits(*slots: str, data: str = "") -> None:
    """Where each model (and data set) came from, and under which licence: one click away, in "About this demo"."""
    lines = [f"**{registry.spec(s).title}**: {registry.describe(s)[2]}. Licence: {registry.licence(s)}."
             for s in slots]
    if data:
        lines.append(f"**Data**: {data}")
    with st.expander("About this demo: models, data and licences", icon=":material/info:"):
        st.caption("  \n".join(lines))


def _secrets() -> dict:
    try:
        return st.secrets.to_dict()
    except Exception:  # no secrets.toml: nothing configured
        return {}


def _visitor() -> str:
    """Who this visitor is, for the rate limit and the sign-in lockout, so that a reload or a new tab is the
    same visitor (core.access.visitor_key). A named user's name first (with a shared password the name is
    the visitor's own choice, so it is not used); else st.context.ip_address (behind a proxy on this machine,
    uvicorn already puts its X-Forwarded-For there; we read no header ourselves: anyone can send one). It is
    None only for a browser on this machine: then the token in Streamlit's _streamlit_xsrf cookie, the same
    per browser across reloads (clearing cookies resets it, which only that local user can do). No cookie
    (XSRF protection off): this session, as before (an id kept in session state: AppTest gives every
    session the same session_id)."""
    state = st.session_state
    user = state.get("user") if state.get("named_user") else None
    session = state.setdefault("visitor_session", uuid.uuid4().hex)
    return access.visitor_key(user, st.context.ip_address, st.context.cookies.get("_streamlit_xsrf"), session)


def access_gate() -> bool:
    """True when this visitor may use the app; otherwise shows the sign-in form and returns False."""
    rules = access.load_access(_secrets())
    state = st.session_state
    if not rules.required:
        st.sidebar.caption("🔓 **Open access**: anyone with the link can use this app. Set a password to "
                           "restrict it (README, Hosting)." + ("  \n⚠️ Everyone is an operator here "
                                                                "(LAUNCHPAD_OPERATORS=*)." if is_operator() else ""))
        return True
    if state.get("user"):
        with st.sidebar:
            st.caption(f"Signed in as **{files.plain(state.user)}**" + (" (operator)" if is_operator() else ""))
            if st.button("Sign out", key="sign_out"):
                state.clear()
                st.rerun()
        return True
    guard = access.lockout_for(_visitor())  # per visitor, not per session: a reload keeps the lockout
    st.title("🚀 Launchpad")
    st.caption("This demo is private. Sign in with the details you were given.")
    with st.form("sign_in"):
        name = st.text_input("Name" if rules.users else "Name (optional)", key="sign_in_name", max_chars=100)
        password = st.text_input("Password", type="password", key="sign_in_password", max_chars=200)
        if st.form_submit_button("Sign in", type="primary"):
            wait = guard.wait_seconds()
            if wait:
                st.error(f"Too many attempts. Try again in {wait:.0f} s.")
            elif (user := rules.verify(name, password)) is not None:
                state.user, state.named_user = user, user in rules.users  # a shared password names no one
                st.rerun()
            else:
                guard.failed()
                st.error("That name and password don't match.")
    return False


def is_operator() -> bool:
    """Whether this visitor is an operator (core.access: a named user listed in LAUNCHPAD_OPERATORS, or everyone
    with LAUNCHPAD_OPERATORS=*): Operations pages, model loading, retraining, overwriting saved classes."""
    state = st.session_state
    return access.load_access(_secrets()).is_operator(state.get("user"), bool(state.get("named_user")))


def operations_gate() -> None:
    """Call first on an Operations page: stops with why this visitor may not use it, and how an operator is set."""
    state = st.session_state
    refusal = access.load_access(_secrets()).operations_refusal(state.get("user"), bool(state.get("named_user")))
    if refusal:
        st.warning(refusal, icon=":material/lock:")
        st.stop()


def operations_visible() -> bool:
    """Operations appear in the navigation for operators, and with open access (their pages then say how to
    set an operator); a signed-in viewer does not see them."""
    return is_operator() or not access.load_access(_secrets()).required


def allow_heavy_call() -> bool:
    """A per-visitor limit on model calls, so one visitor cannot starve the others; shared by the visitor's
    sessions (a reload does not reset it) and, for the same client address, by their HTTP API calls; and the
    whole server's budget, all visitors together."""
    wait, limiter = access.heavy_call(_visitor())
    if wait and limiter is access.server_limiter():
        st.warning(f"The demo is busy: all visitors together may make {limiter.calls} model calls per "
                   f"{limiter.seconds:.0f} s on this server, and they have. Try again in {max(wait, 1):.0f} s.",
                   icon=":material/timer:")
    elif wait:
        st.warning(f"You're going a little fast: this demo allows {limiter.calls} model calls per "
                   f"{limiter.seconds:.0f} s for each visitor. Try again in {max(wait, 1):.0f} s.",
                   icon=":material/timer:")
    return not wait


def api_help(*examples: str) -> None:
    """The "Use via API" expander: core.api's curl and Python examples for this demo (tests/test_api.py runs
    exactly these against a live server), with this server's address filled in."""
    from urllib.parse import urlsplit

    from core import api

    try:
        url = urlsplit(st.context.url or "")
        base = f"{url.scheme}://{url.netloc}" if url.scheme and url.netloc else "http://localhost:8501"
    except Exception:  # no browser context (AppTest)
        base = "http://localhost:8501"
    with st.expander("Use via API", icon=":material/api:"):
        if api.keys_required():
            st.caption("Sign-in is on, so the API needs a key: set `LAUNCHPAD_API_KEY` to the one you were given "
                       "(an admin makes one with `python -m core.api key NAME`).")
        else:
            st.caption("🔓 **Open access**: the API is open to anyone who can reach this server, like the app. "
                       "Configure sign-in to require keys (README, HTTP API).")
        for name in examples:
            example = api.EXAMPLES[name]
            curl, python = example.filled(base)
            st.markdown(f"`{example.route}` · schema and a try-it page: [{base}/api/v1/docs]({base}/api/v1/docs)")
            shell, code = st.tabs(["curl", "Python"])
            shell.code(curl, language="bash")
            code.code(python, language="python")
