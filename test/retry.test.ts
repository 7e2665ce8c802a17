import t from 'tap'
import { withRetry } from '../lib/retry'

const transient = Object.assign(new Error('reset'), { transient: true })
const fatal = new Error('denied')
const retryable = (err: unknown): boolean => (err as { transient?: boolean }).transient === true

t.test('retries a transient failure with growing, jittered waits, up to the attempts', async (t) => {
  const delays: number[] = []
  let calls = 0
  const error = await withRetry(async () => { calls++; throw transient }, {
    attempts: 4,
    baseDelay: 20,
    maxDelay: 50,
    signal: new AbortController().signal,
    retryable,
    onRetry: (_err, _attempt, delay) => delays.push(delay)
  }).catch((err: Error) => err)
  t.equal(error, transient, 'the last error, as is')
  t.equal(calls, 4)
  t.equal(delays.length, 3)
  t.ok(delays[0] <= 20 && delays[1] <= 40 && delays[2] <= 50, `each wait within its cap: ${delays.join(', ')}`)
})

t.test('succeeds on a later attempt', async (t) => {
  let calls = 0
  const value = await withRetry(async (n) => { calls++; if (n < 3) throw transient; return 'done' }, {
    attempts: 5, baseDelay: 1, maxDelay: 1, signal: new AbortController().signal, retryable
  })
  t.equal(value, 'done')
  t.equal(calls, 3)
})

t.test('an error that is not retryable stops at once', async (t) => {
  let calls = 0
  await t.rejects(withRetry(async () => { calls++; throw fatal }, { attempts: 5, baseDelay: 1, maxDelay: 1, signal: new AbortController().signal, retryable }), fatal)
  t.equal(calls, 1)
})

t.test('an abort ends the wait and rethrows the last error', async (t) => {
  const controller = new AbortController()
  let calls = 0
  const started = Date.now()
  setTimeout(() => controller.abort(), 20)
  await t.rejects(withRetry(async () => { calls++; throw transient }, { attempts: 5, baseDelay: 60_000, maxDelay: 60_000, signal: controller.signal, retryable: () => true }), transient)
  t.ok(Date.now() - started < 5000, 'did not wait out the delay')
  t.ok(calls <= 2)
})
