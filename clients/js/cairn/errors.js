// The one error type this module throws. `code` is stable (scripts branch on it); `message` says
// what was wrong and what to do.
export class CairnError extends Error {
  /**
   * @param {"invalid_name"|"too_large"|"not_found"|"refused"|"rejected"|"timeout"|"no_relay"|"conflict"} code
   * @param {string} message
   */
  constructor(code, message, options) {
    super(message, options)
    this.name = "CairnError"
    this.code = code
  }
}
