// qlik-embed's data-get-access-token="getAccessToken": the signed-in user's Qlik Cloud access
// token, from the portal's own endpoint. Same-origin (the portal refuses other origins), POST
// (never a cacheable GET), no cookies or tokens anywhere else; the token stays in memory.
async function getAccessToken() {
  const r = await fetch("/qlik/cloud/access-token", {method: "POST", credentials: "same-origin",
                                                      cache: "no-store"});
  if (r.status !== 200) {
    throw new Error(r.status === 401 ? "not signed in to the portal" : "the portal refused a token (" + r.status + ")");
  }
  return r.text();
}
window.getAccessToken = getAccessToken;
