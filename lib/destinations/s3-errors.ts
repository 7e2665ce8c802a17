// What S3 and the network answer, as the plugin's errors, and which of them are worth another try.
import {
  isPluginError, FST_SQLITE_BACKUP_S3_ACCESS_DENIED, FST_SQLITE_BACKUP_S3_NO_BUCKET, FST_SQLITE_BACKUP_S3_REQUEST_FAILED
} from '../errors'

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'TimeoutError', 'RequestTimeout'])

/** An SDK error as one that says what to do; the original stays as `cause`, and its status code decides retries. */
export function describeS3Error (action: string, err: unknown, name: string, where: string): Error {
  if (isPluginError(err)) return err
  const status = statusOf(err)
  if (status === 403) return new FST_SQLITE_BACKUP_S3_ACCESS_DENIED(name, `${action}: HTTP 403`, { cause: err })
  if (status === 404 && (err as { name?: string }).name !== 'NoSuchKey' && action === 'check the bucket') {
    return new FST_SQLITE_BACKUP_S3_NO_BUCKET(name, where, { cause: err })
  }
  if ((err as { name?: string }).name === 'NoSuchBucket') return new FST_SQLITE_BACKUP_S3_NO_BUCKET(name, where, { cause: err })
  const { message, name: kind, code } = err as { message?: string, name?: string, code?: string }
  const detail = message && message !== 'UnknownError' ? message : (kind ?? String(err))
  const because = [code, status ? `HTTP ${status}` : undefined].filter((part) => part !== undefined && !detail.includes(part))
  return new FST_SQLITE_BACKUP_S3_REQUEST_FAILED(`${action} at "${name}"`, `${detail}${because.length > 0 ? ` (${because.join(', ')})` : ''}`, { cause: err })
}

/** Retried: network errors, timeouts, throttling and 5xx. */
export function isTransientS3Error (err: unknown): boolean {
  if ((err as { code?: string }).code === 'FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT') return true
  const status = statusOf(err)
  if (status !== undefined) return status >= 500 || status === 429
  // What the SDK or the network said, under our description of it.
  const original = (err as { code?: string }).code === 'FST_SQLITE_BACKUP_S3_REQUEST_FAILED' ? (err as Error).cause : err
  const { code, name } = (original ?? {}) as { code?: string, name?: string }
  return NETWORK_ERRORS.has(code ?? '') || NETWORK_ERRORS.has(name ?? '')
}

export function statusOf (err: unknown): number | undefined {
  const direct = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
  if (direct !== undefined) return direct
  const cause = (err as { cause?: unknown }).cause
  return cause ? (cause as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode : undefined
}

/** What the destination reads of an SDK or system error: enough to describe it and to decide on a retry. */
export interface SentError { name?: string, message: string, code?: string, status?: number }

/** An error received from the upload thread, with the fields describeS3Error() and isTransientS3Error() read. */
export function receivedError ({ name, message, code, status }: SentError): Error {
  return Object.assign(new Error(message), { name: name ?? 'Error', code, $metadata: { httpStatusCode: status } })
}

/** What an upload thread sends of an error. */
export function sendableError (err: unknown): SentError {
  const { name, message, code, $metadata: metadata } = (err ?? {}) as { name?: string, message?: string, code?: unknown, $metadata?: { httpStatusCode?: number } }
  return { name, message: message ?? String(err), code: typeof code === 'string' ? code : undefined, status: metadata?.httpStatusCode }
}
