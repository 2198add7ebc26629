// Package ingest is the array's fax and voicemail gateway (the patent's
// fax 70 and voicemail 80): a fax server or a PBX posts a received fax
// (TIFF) or voice message (WAV) over HTTP, and it arrives in the
// recipient's mailbox as an ordinary mail message, readable over POP3,
// IMAP and webmail.
//
// POST /v1/ingest/fax?to=ADDRESS[&from=CALLER] and /v1/ingest/voice take
// the document as the raw request body. The Gateway checks, cheapest
// first: the caller (a bearer token, Config.Token, or without one a
// loopback client), the parameters, the declared size, the recipient
// (Backend.CheckRecipient, before the upload is read), then the upload's
// size and format: ParseTIFF walks the image file directories ("II*\0" or
// "MM\0*", every directory inside the file, no loops) and counts pages;
// ParseWAV walks the RIFF chunks ("RIFF....WAVE", a valid "fmt " chunk and
// a "data" chunk) and computes the duration. Kind.Build wraps the document
// in a multipart/mixed message, with our Received header first, a From at
// the recipient's domain named after the caller, a subject such as "Fax
// from +1 555 0100 (3 pages)", a text part and the base64 attachment.
// Backend.Deliver then runs it through the node's inbound pipeline and
// placement exactly as a message received over SMTP, so it is filtered,
// stored on W of R nodes before the 201 answer, and notified alike.
//
// Answers are JSON: 201 with the transaction id; otherwise {"error": ...}
// with 400 (bad parameters), 401/403 (authentication), 404 (unknown
// recipient), 413 (too big: the message, base64 and all, must fit the
// node's max-message-bytes), 415 (not a TIFF/WAV), 422 (refused by the
// pipeline), 503 with Retry-After (no write quorum, a filter down, too
// many uploads at once) and 507 (quota). Every refusal is logged.
package ingest
