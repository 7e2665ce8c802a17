// Heavy backends (the AWS SDK, age encryption) are optional peer dependencies: installed by those who use them.

/** The package of `candidates` that a failed require or import could not find, if that is why it failed. */
export function missingPackage (err: unknown, candidates: string[]): string | undefined {
  const { code, message } = err as { code?: string, message?: string }
  if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') return undefined
  return candidates.find((name) => message?.includes(`'${name}'`) === true)
}
