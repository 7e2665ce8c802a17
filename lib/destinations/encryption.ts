import { Readable } from 'node:stream'
import { isPluginError, FST_SQLITE_BACKUP_DECRYPT_FAILED, FST_SQLITE_BACKUP_MISSING_DEPENDENCY, FST_SQLITE_BACKUP_INVALID_OPTION } from '../errors'
import { missingPackage } from '../optional-dependency'

/** age keys of an S3 destination: the recipient encrypts (it is public); the identity decrypts (it is secret). */
export interface EncryptionSettings {
  recipient: string
  /** Needed by verify, restore and restoreIfMissing only; never logged, never in an error or a record. */
  identity?: string
}

type Age = typeof import('age-encryption', { with: { 'resolution-mode': 'import' } })
let loaded: Promise<Age> | undefined

// age-encryption is an ES module and an optional dependency; it is loaded only when a destination encrypts.
async function age (): Promise<Age> {
  loaded ??= import('age-encryption').catch((err: unknown) => {
    loaded = undefined
    if (missingPackage(err, ['age-encryption']) === undefined) throw err
    throw new FST_SQLITE_BACKUP_MISSING_DEPENDENCY('Encryption', 'age-encryption', { cause: err })
  })
  return await loaded
}

/** The recipient (`age1...`) of an identity (`AGE-SECRET-KEY-1...`); throws if age cannot parse the identity. */
async function recipientOf (identity: string): Promise<string> {
  return await (await age()).identityToRecipient(identity)
}

/**
 * Throws if age cannot encrypt to `recipient`: parsed as age parses it, then used once, on an empty file (which
 * also refuses a key that parses but is not a usable public key).
 */
async function checkRecipient (recipient: string): Promise<void> {
  const encrypter = new (await age()).Encrypter()
  encrypter.addRecipient(recipient)
  await encrypter.encrypt(new Uint8Array(0))
}

/** Encrypts a stream to the age format, 64 KiB chunk by 64 KiB chunk, pulled as the consumer reads. */
export async function encryptStream (source: Readable, recipient: string): Promise<Readable> {
  const encrypter = new (await age()).Encrypter()
  encrypter.addRecipient(recipient)
  return toNode(await encrypter.encrypt(toWeb(source)))
}

/**
 * Decrypts an age stream. A wrong identity fails at once; tampered or truncated ciphertext fails at the chunk
 * whose authentication tag does not match, so nothing unauthenticated is ever written as a whole backup.
 */
export async function decryptStream (source: Readable, id: string, identity: string | undefined): Promise<Readable> {
  if (identity === undefined) throw new FST_SQLITE_BACKUP_DECRYPT_FAILED(id, 'it is encrypted and the destination has no "encryption.identity"')
  const decrypter = new (await age()).Decrypter()
  try {
    decrypter.addIdentity(identity)
  } catch {
    // age's own message quotes the key: it is not passed on.
    throw new FST_SQLITE_BACKUP_DECRYPT_FAILED(id, '"encryption.identity" is not a valid age identity')
  }
  try {
    return toNode(await decrypter.decrypt(toWeb(source)), id)
  } catch (err) {
    throw new FST_SQLITE_BACKUP_DECRYPT_FAILED(id, (err as Error).message, { cause: err })
  }
}

// Pull-based in both directions: a chunk is read only when the next stage asks for one, so memory stays bounded.
function toWeb (source: Readable): ReadableStream<Uint8Array> {
  const chunks = source[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array>({
    async pull (controller) {
      const { value, done } = await chunks.next()
      if (done === true) controller.close()
      else controller.enqueue(new Uint8Array((value as Buffer).buffer, (value as Buffer).byteOffset, (value as Buffer).byteLength))
    },
    async cancel () {
      source.destroy()
    }
  }, { highWaterMark: 1 })
}

function toNode (stream: ReadableStream<Uint8Array>, id?: string): Readable {
  const reader = stream.getReader()
  return Readable.from((async function * () {
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return
        yield Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      }
    } catch (err) {
      if (id === undefined) throw err
      throw new FST_SQLITE_BACKUP_DECRYPT_FAILED(id, (err as Error).message, { cause: err })
    } finally {
      reader.releaseLock()
    }
  })(), { objectMode: false })
}

/**
 * Runs age's parsing of a key. What age throws is replaced, not wrapped: its messages quote the key, and an
 * identity is a secret. A missing age-encryption package keeps its own error.
 */
async function parseKey<T> (option: string, expected: string, parse: () => Promise<T>): Promise<T> {
  try {
    return await parse()
  } catch (err) {
    if (isPluginError(err)) throw err
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(option, expected)
  }
}

/**
 * The recipient to encrypt to: given, or derived from the identity; both given must match. The options check looks
 * at the keys' shape only; age parses them here, and a key it refuses is FST_SQLITE_BACKUP_INVALID_OPTION.
 */
export async function checkedRecipientOf ({ recipient, identity }: EncryptionSettings): Promise<string> {
  if (identity === undefined) {
    await parseKey('encryption.recipient', 'an age recipient (public key) that age can encrypt to', () => checkRecipient(recipient))
    return recipient
  }
  const derived = await parseKey('encryption.identity', 'an age identity (secret key) that age can read', () => recipientOf(identity))
  if (recipient !== '' && recipient !== derived) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('encryption', 'a recipient that belongs to the identity, or only one of them')
  }
  return derived
}
