import type { FastifyBaseLogger } from 'fastify'
import type { ResolvedOptions } from './options'

type HookName = 'onBackup' | 'onError'
export type Notify = <K extends HookName>(hook: K, value: Parameters<NonNullable<ResolvedOptions[K]>>[0]) => void

/** Calls the app's onBackup/onError callbacks; one that throws is logged, never allowed to break a run. */
export function createNotify (options: Pick<ResolvedOptions, HookName>, log: FastifyBaseLogger): Notify {
  return (hook, value) => {
    const callback = options[hook] as ((value: unknown) => void) | undefined
    if (!callback) return
    try {
      callback(value)
    } catch (err) {
      log.error({ err }, `sqlite backup: the ${hook} callback threw`)
    }
  }
}
