import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The JSON error body every Animus endpoint answers with
 * (`{"status": 404, "reason": "...", "message": "..."}`).
 */
export interface IAnimusErrorBody {
  status?: number;
  reason?: string;
  message?: string;
  details?: unknown;
}

/**
 * An error answered by the Animus server extension.
 *
 * `message` is the human readable text of the error body; `status` and
 * `reason` are kept so callers can branch on them (e.g. 404 → "not set").
 */
export class AnimusRequestError extends ServerConnection.ResponseError {
  constructor(
    response: Response,
    message: string,
    readonly reason: string | null = null
  ) {
    super(response, message);
  }
}

/**
 * Call an endpoint of the Animus jupyter server extension.
 *
 * @param endPoint Path below `<baseUrl>animus/`, e.g. `context`.
 * @param init Fetch options (method, body, headers).
 * @returns The decoded JSON body.
 * @throws ServerConnection.NetworkError when the server cannot be reached,
 *   AnimusRequestError carrying the body's `message` on a non-2xx answer.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const requestUrl = URLExt.join(settings.baseUrl, 'animus', endPoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(requestUrl, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  let data: any = await response.text();
  if (data.length > 0) {
    try {
      data = JSON.parse(data);
    } catch (error) {
      console.error('Not a JSON response body.', response);
    }
  }

  if (!response.ok) {
    const body: IAnimusErrorBody =
      data !== null && typeof data === 'object' ? data : {};
    // A non-JSON body (e.g. tornado's HTML 404 page) is not shown to users.
    const message =
      body.message || `${response.status} ${response.statusText}`.trim();
    throw new AnimusRequestError(response, message, body.reason ?? null);
  }

  return data as T;
}
