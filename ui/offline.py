"""What the page says when the server does not answer: PTune Studio's words instead of Streamlit's.

Streamlit's frontend shows its own connection-error dialog when the server stops answering ("Streamlit server is
not responding. Are you connected to the internet?", or on `localhost` "Is Streamlit still running? ... restart it
in your terminal: streamlit run yourscript.py"), words that blame the person's internet or ask them to restart a
script they never started. A small script on the page (run once per browser page, as `ui/gate.py` sets cookies)
watches what changes in the document and rewrites that text where it appears; the reconnecting itself stays Streamlit's.
"""

from __future__ import annotations

import json

import streamlit as st

WORDS = (
    "PTune Studio's server is not answering — it may be restarting. Your runs keep going in their workers; "
    "this page reconnects by itself."
)
STREAMLIT_WORDS = ("Streamlit server is not responding", "Is Streamlit still running?")  # its frontend, 1.67
_SCRIPT = """<script>
(() => {
  if (window.__ptuneOfflineWords) return;  // once per page: the observer outlives every rerun
  window.__ptuneOfflineWords = true;
  const words = %(words)s, theirs = %(theirs)s;
  // only what changed is read: every rerun mutates the page, and a walk of the whole document each time would
  // sit on the path of every page switch
  const rewrite = (root) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const hits = [];
    for (let node = root.nodeType === Node.TEXT_NODE ? root : walker.nextNode(); node; node = walker.nextNode()) {
      if (theirs.some(t => node.nodeValue.includes(t))) hits.push(node);
    }
    for (const node of hits) {
      node.nodeValue = words;
      const box = node.parentElement && node.parentElement.closest('[role="dialog"]');
      // the localhost variant's "streamlit run yourscript.py": not what anyone here should type
      if (box) box.querySelectorAll('pre').forEach(pre => { pre.style.display = 'none'; });
    }
  };
  new MutationObserver(mutations => mutations.forEach(m => {
    if (m.type === 'characterData') rewrite(m.target);
    else m.addedNodes.forEach(rewrite);
  })).observe(document.body, {childList: true, subtree: true, characterData: true});
  rewrite(document.body);
})();
</script>"""


def reword_connection_errors() -> None:
    """Put the script on the page (every run: the same element each time, so the browser runs it once)."""
    script = _SCRIPT % {"words": json.dumps(WORDS), "theirs": json.dumps(list(STREAMLIT_WORDS))}
    st.html(script, unsafe_allow_javascript=True)
