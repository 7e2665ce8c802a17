import { durationOption } from '../duration'
import type { EncryptionSettings } from './encryption'
import { FST_SQLITE_BACKUP_INVALID_OPTION, FST_SQLITE_BACKUP_UNKNOWN_OPTION, FST_SQLITE_BACKUP_INVALID_DESTINATION } from '../errors'

export interface S3Settings {
  type: 's3'
  bucket: string
  /** '' or ending with '/'. */
  prefix: string
  region: string
  endpoint?: string
  forcePathStyle: boolean
  credentials?: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
  compression: 'gzip' | 'none'
  /** Client-side encryption (age), after compression. */
  encryption?: EncryptionSettings
  /** Bytes per part of a multipart upload; memory use is about partSize × (queueSize + 1). */
  partSize: number
  queueSize: number
  /** Longest time one upload (data and record) may take before it is aborted. */
  uploadTimeout: number
  /** Longest wait for the server's answer to one request (headers; a body then must not stall as long). */
  requestTimeout: number
  /** Tries per backup, the first included. */
  attempts: number
}

const S3_DEFAULTS = {
  compression: 'gzip',
  partSize: 8 * 1024 * 1024,
  queueSize: 2,
  uploadTimeout: 60 * 60_000,
  requestTimeout: 2 * 60_000,
  attempts: 4
} as const

// S3's own floor for every part but the last.
const MIN_PART_SIZE = 5 * 1024 * 1024
const S3_KEYS = [
  'type', 'bucket', 'prefix', 'region', 'endpoint', 'forcePathStyle', 'credentials', 'compression',
  'partSize', 'queueSize', 'uploadTimeout', 'requestTimeout', 'attempts', 'encryption'
] as const
const AGE_RECIPIENT = /^age1[0-9a-z]{20,}$/
const AGE_IDENTITY = /^AGE-SECRET-KEY-[0-9A-Z-]{20,}$/
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

/** How an S3 destination is named in logs, errors and status: `s3://bucket/prefix`. Never holds a secret. */
export function s3Url (settings: Pick<S3Settings, 'bucket' | 'prefix'>): string {
  return `s3://${settings.bucket}/${settings.prefix}`
}

/**
 * Validates an S3 destination descriptor. Makes no request; `where` names it in errors (`destination` or
 * `destination[1]`). Secrets are never echoed back in a message.
 */
export function resolveS3 (value: Record<string, unknown>, where: string): S3Settings {
  for (const key of Object.keys(value)) {
    if (!(S3_KEYS as readonly string[]).includes(key)) {
      throw new FST_SQLITE_BACKUP_UNKNOWN_OPTION(`${where}.${key}`, `; an S3 destination takes ${S3_KEYS.join(', ')}`)
    }
  }
  const bucket = value.bucket
  if (typeof bucket !== 'string' || !BUCKET_NAME.test(bucket) || bucket.includes('..')) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.bucket`, 'an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens')
  }
  const prefix = value.prefix ?? ''
  if (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.includes('\0') || prefix.length > 512) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.prefix`, 'a key prefix such as \'backups/app/\' (not starting with "/")')
  }
  const region = value.region
  if (typeof region !== 'string' || !/^[a-z0-9-]+$/.test(region)) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.region`, 'a region such as \'eu-west-1\' (S3-compatible servers accept any, e.g. \'us-east-1\')')
  }
  const endpoint = value.endpoint
  if (endpoint !== undefined && !isHttpUrl(endpoint)) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.endpoint`, 'an http(s) URL such as \'https://s3.example.com\'')
  }
  const forcePathStyle = value.forcePathStyle ?? false
  if (typeof forcePathStyle !== 'boolean') throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.forcePathStyle`, 'true or false')
  const compression = value.compression ?? S3_DEFAULTS.compression
  if (compression !== 'gzip' && compression !== 'none') throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.compression`, '\'gzip\' or \'none\'')
  return {
    type: 's3',
    bucket,
    // A prefix names a folder: 'backups' and 'backups/' are the same place.
    prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
    region,
    endpoint: endpoint as string | undefined,
    forcePathStyle,
    credentials: credentials(value.credentials, where),
    compression,
    partSize: integer(`${where}.partSize`, value.partSize, S3_DEFAULTS.partSize, MIN_PART_SIZE, 5 * 1024 ** 3),
    queueSize: integer(`${where}.queueSize`, value.queueSize, S3_DEFAULTS.queueSize, 1, 16),
    uploadTimeout: durationOption(`${where}.uploadTimeout`, value.uploadTimeout, S3_DEFAULTS.uploadTimeout),
    requestTimeout: durationOption(`${where}.requestTimeout`, value.requestTimeout, S3_DEFAULTS.requestTimeout),
    attempts: integer(`${where}.attempts`, value.attempts, S3_DEFAULTS.attempts, 1, 20),
    encryption: encryption(value.encryption, `${where}.encryption`)
  }
}

/** Keys are checked by shape only, and never echoed back. */
function encryption (value: unknown, where: string): EncryptionSettings | undefined {
  if (value === undefined) return undefined
  const expected = '{ recipient: \'age1...\', identity?: \'AGE-SECRET-KEY-1...\' }: an age recipient to encrypt to, and the identity to decrypt with (at least one of them)'
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FST_SQLITE_BACKUP_INVALID_OPTION(where, expected)
  const { recipient, identity, ...rest } = value as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new FST_SQLITE_BACKUP_UNKNOWN_OPTION(`${where}.${unknown[0]}`, '; encryption takes recipient and identity')
  if (recipient !== undefined && (typeof recipient !== 'string' || !AGE_RECIPIENT.test(recipient))) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.recipient`, 'an age recipient (public key) such as \'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\'')
  }
  if (identity !== undefined && (typeof identity !== 'string' || !AGE_IDENTITY.test(identity))) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.identity`, 'an age identity (secret key) starting with \'AGE-SECRET-KEY-\'')
  }
  if (recipient === undefined && identity === undefined) throw new FST_SQLITE_BACKUP_INVALID_OPTION(where, expected)
  return identity === undefined ? { recipient: recipient as string } : { recipient: (recipient as string | undefined) ?? '', identity }
}

function credentials (value: unknown, where: string): S3Settings['credentials'] {
  if (value === undefined) return undefined
  const expected = '{ accessKeyId, secretAccessKey, sessionToken? } as non-empty strings, or nothing for the SDK\'s standard chain'
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.credentials`, expected)
  const { accessKeyId, secretAccessKey, sessionToken, ...rest } = value as Record<string, unknown>
  // The AWS SDK marks credential objects it has used with `$`-prefixed keys (such as `$source`): an object shared
  // with the app's own S3Client must still be accepted.
  const unknown = Object.keys(rest).filter((key) => !key.startsWith('$'))
  if (unknown.length > 0) throw new FST_SQLITE_BACKUP_UNKNOWN_OPTION(`${where}.credentials.${unknown[0]}`, '; credentials take accessKeyId, secretAccessKey and sessionToken')
  if (typeof accessKeyId !== 'string' || accessKeyId === '' || typeof secretAccessKey !== 'string' || secretAccessKey === '' ||
    (sessionToken !== undefined && (typeof sessionToken !== 'string' || sessionToken === ''))) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.credentials`, expected)
  }
  return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken }
}

function isHttpUrl (value: unknown): boolean {
  if (typeof value !== 'string') return false
  try {
    const url = new URL(value)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === ''
  } catch {
    return false
  }
}

function integer (name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, `a whole number from ${min} to ${max}`)
  }
  return value
}

/** Two destinations naming the same place would race each other's retention. */
export function checkDistinct (names: string[]): void {
  const seen = new Set<string>()
  for (const name of names) {
    if (seen.has(name)) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(name, 'it is listed twice')
    seen.add(name)
  }
}
