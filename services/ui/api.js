// The service's API as the page calls it: the API key, readable errors, the shared state.

const KEY_STORAGE = "recsys.apiKey"; // sessionStorage only: never localStorage, never the URL

/** What the page's parts share. */
export const state = {
  auth: null, // does the service ask for keys? (null: not known yet)
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  labels: {}, // feature -> readable label (GET /ui/labels.json)
  statusError: null, // the HTTP status of a failed status call (401: keys are on)
  onUnauthorized: () => {}, // the key field's handler: a 401 asks for another key
};

export function setKey(key) {
  state.key = key;
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export const keyReady = () => !state.auth || Boolean(state.key);

export const label = (feature) => state.labels[feature] || feature.replace(/_/g, " ");

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  const error = body && typeof body.error === "string" ? body.error : "";
  let detail = "";
  if (body && body.detail !== undefined && body.detail !== null) {
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    if (detail.length > 200) detail = `${detail.slice(0, 200)}…`;
  }
  const why = [error, detail].filter(Boolean).join(": ");
  if (status === 401) {
    return state.key
      ? `The API key was not accepted (${why || "401"}). Enter another one above.`
      : "This needs an API key: enter one above.";
  }
  if (status === 403) return `Your API key may not do this (${why || "403 forbidden"}).`;
  if (status === 429) return "Too many requests with this key: wait a moment and try again.";
  if (status >= 500) return `The service could not answer (${status}${why ? `: ${why}` : ""}).`;
  return why || `The service answered ${status}.`;
}

/** fetch() with the key; non-2xx answers become an ApiError with a readable message. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.key && state.auth !== false) headers.Authorization = `Bearer ${state.key}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError(0, `The service did not answer (${err.message}).`, null);
  }
  if (!response.ok) {
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    const failure = new ApiError(response.status, describe(response.status, payload), payload);
    if (response.status === 401 && state.auth) state.onUnauthorized(failure.message);
    throw failure;
  }
  return response;
}

export async function getJson(path, options) {
  const response = await api(path, options);
  return { status: response.status, body: await response.json() };
}
