// The admin API of this gateway, under the key this tab signed in with. Reads revalidate:
// each GET sends back the ETag of what it last got, and a 304 means nothing changed, so the
// page need not redraw (nor move the reader's focus).

export const KEY = "maas-console-key";

const seen = new Map(); // path -> { etag, data } of its last 200

function headers() {
  return { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
}

async function answered(answer) {
  const text = await answer.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = {};
  }
  if (!answer.ok) {
    const error = new Error(data.error?.message || `${answer.status} ${answer.statusText}`);
    error.status = answer.status;
    throw error;
  }
  return data;
}

// A change (or a read that must not be revalidated): the answer's JSON, or an Error carrying
// the server's own message and status.
export async function api(method, path, body) {
  const sent = headers();
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  return answered(answer);
}

// A read: { data, changed }, `changed` false when the server said 304 to our ETag.
export async function get(path) {
  const sent = headers();
  const known = seen.get(path);
  if (known) sent["If-None-Match"] = known.etag;
  const answer = await fetch(path, { headers: sent, cache: "no-store" });
  if (answer.status === 304 && known) {
    await answer.arrayBuffer(); // read to its (empty) end, or the browser counts it aborted
    return { data: known.data, changed: false };
  }
  const data = await answered(answer);
  const etag = answer.headers.get("ETag");
  if (etag) seen.set(path, { etag, data });
  else seen.delete(path);
  return { data, changed: true };
}

// Another key may see other things: nothing read under the last one is reused.
export function forget() {
  seen.clear();
}
