// A stand-in for qlik-embed's loader, so the example runs with no network: it reads the same
// attributes from its <script> tag (data-host, data-client-id, data-auth-type="OAuth2",
// data-get-access-token), gets a token from the named function as qlik-embed does, and calls
// the tenant with it (Authorization: Bearer; the tenant answers CORS for the OAuth client's
// allowed origins). Instead of a sheet, each <qlik-embed> shows who the tenant says you are.
(function () {
  const config = document.currentScript.dataset;
  async function tenantFetch(path) {
    const getToken = window[config.getAccessToken];
    if (config.authType.toLowerCase() !== "oauth2" || typeof getToken !== "function") {
      throw new Error("data-auth-type must be OAuth2 with data-get-access-token naming a function");
    }
    const token = await getToken();
    const r = await fetch(config.host + path, {headers: {Authorization: "Bearer " + token},
                                                credentials: "omit", cache: "no-store"});
    if (!r.ok) throw new Error("the tenant answered " + r.status);
    return r.json();
  }
  function line(el, id, label, value) {
    const p = document.createElement("p");
    const b = document.createElement("b");
    b.textContent = label + ": ";
    const span = document.createElement("span");
    span.id = id;
    span.textContent = value;  // text, never HTML
    p.append(b, span);
    el.append(p);
  }
  class QlikEmbed extends HTMLElement {
    async connectedCallback() {
      this.textContent = "Connecting to Qlik Cloud...";
      try {
        const me = await tenantFetch("/api/v1/users/me");
        this.textContent = "";
        line(this, "cloud-email", "Qlik Cloud user", me.email);
        line(this, "cloud-subject", "Subject", me.subject);
        line(this, "cloud-groups", "Groups", (me.assignedGroups || []).map(g => g.name).join(", "));
        line(this, "cloud-app", "Would show", this.getAttribute("ui") + " of app " + this.getAttribute("app-id"));
        this.dataset.state = "ready";
      } catch (e) {
        this.textContent = "";
        line(this, "cloud-error", "Qlik Cloud", String(e.message || e));
        this.dataset.state = "error";
      }
    }
  }
  customElements.define("qlik-embed", QlikEmbed);
})();
