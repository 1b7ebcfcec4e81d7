// The viewer's HTTP client: the API key from sessionStorage, JSON in and out,
// RFC 9457 problem details turned into readable errors.

const KEY_STORAGE = "explainer.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE) ?? "",
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
};

/** An API error carrying the problem document (title, detail, errors[{loc, msg}]). */
export class ApiError extends Error {
  constructor(status, problem) {
    const title = problem.title ?? `HTTP ${status}`;
    super(problem.detail ? `${title}: ${problem.detail}` : title);
    this.status = status;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

function authHeaders() {
  const key = apiKey.get();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function checked(response) {
  if (response.ok) return response;
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText };
  }
  throw new ApiError(response.status, problem);
}

/** GET or POST JSON; resolves to the parsed body or throws ApiError. */
export async function requestJson(path, body) {
  const init = { headers: { Accept: "application/json", ...authHeaders() } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await checked(await fetch(path, init));
  return response.json();
}

/** Fetch a resource with the API key and return an object URL for it (revoke when done). */
export async function objectUrl(path) {
  const response = await checked(await fetch(path, { headers: authHeaders() }));
  return URL.createObjectURL(await response.blob());
}
