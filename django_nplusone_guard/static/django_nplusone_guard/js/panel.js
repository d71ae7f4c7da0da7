// django-nplusone-guard's debug-toolbar panel: its stylesheet and its copy buttons.
//
// No inline script or style anywhere: the toolbar loads this module (with its CSP nonce when
// the page has one), and the stylesheet is added with the nonce of the toolbar's own
// stylesheet, inside the toolbar's shadow root when it uses one.

const STYLESHEET_MARK = "data-djng-stylesheet";

function toolbarRoot() {
    const host = document.getElementById("djDebugRoot");
    return host?.shadowRoot ?? document;
}

function toolbarNonce(root) {
    // Browsers hide the nonce attribute after load; the property keeps it.
    for (const element of root.querySelectorAll("link[rel='stylesheet'], script")) {
        if (element.nonce) {
            return element.nonce;
        }
    }
    return "";
}

function addStylesheet() {
    const root = toolbarRoot();
    const panel = root.querySelector(".djng-panel[data-stylesheet]");
    if (!panel || root.querySelector(`link[${STYLESHEET_MARK}]`)) {
        return;
    }
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = panel.dataset.stylesheet;
    link.setAttribute(STYLESHEET_MARK, "");
    const nonce = toolbarNonce(root);
    if (nonce) {
        link.nonce = nonce;
    }
    (root === document ? document.head : root).appendChild(link);
}

async function copyText(button, text) {
    if (navigator.clipboard && globalThis.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return;
    }
    // Plain-http pages on another host than localhost have no Clipboard API.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "djng-offscreen";
    button.after(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) {
        throw new Error("copy refused");
    }
}

function announce(button, message) {
    const label = button.dataset.label ?? button.textContent;
    button.dataset.label = label;
    button.textContent = message;
    setTimeout(() => {
        button.textContent = label;
    }, 1500);
}

document.addEventListener("click", (event) => {
    // Clicks inside the toolbar's shadow root reach the document retargeted to its host;
    // the composed path still starts at the real button.
    const button = event
        .composedPath()
        .find((node) => node instanceof Element && node.matches("button.djng-copy"));
    if (!button) {
        return;
    }
    event.preventDefault();
    copyText(button, button.dataset.copy ?? "").then(
        () => announce(button, "Copied"),
        () => announce(button, "Select and copy it by hand"),
    );
});

addStylesheet();
// The panel can be rendered again (history panel, UPDATE_ON_FETCH) after this module ran.
toolbarRoot()
    .querySelector("#djDebug")
    ?.addEventListener("djdt.panel.render", (event) => {
        if (event.detail?.panelId === "NPlusOnePanel") {
            addStylesheet();
        }
    });
