"""The Daraja sandbox: a local fake of Safaricom's M-PESA Daraja API, as its own ASGI app.

It speaks Daraja's endpoints, auth and payload shapes (docs/reference-daraja.md),
keeps M-PESA balances, sends callbacks asynchronously, and can be told to fail in the ways
M-PESA fails. It shares no code with Deni.

Daraja endpoints
----------------
GET  /oauth/v1/generate?grant_type=client_credentials  Basic auth; {"access_token",
                                                      "expires_in": "3599"} (a string)
POST /mpesa/stkpush/v1/processrequest                 STK push
POST /mpesa/stkpushquery/v1/query                     500.001.1001 "being processed" if pending
POST /mpesa/b2c/v3/paymentrequest  (and /v1/)         B2C
POST /mpesa/c2b/v2/registerurl     (and /v1/)         C2B URLs (re-register at will)
POST /mpesa/c2b/v2/simulate        (and /v1/)         a customer pays the paybill
POST /mpesa/accountbalance/v1/query                   Result to ResultURL
POST /mpesa/transactionstatus/v1/query                by TransactionID (receipt) or by
                                                      OriginalConversationID (B2C's
                                                      OriginatorConversationID, or an STK
                                                      CheckoutRequestID); unknown: "R000002"
POST /mpesa/reversal/v1/request                       reverses a whole STK or C2B payment
POST /pulltransactions/v1/register                    Pull Transactions sign-up: ResponseStatus
                                                      "1000", then "1001" already registered
POST /pulltransactions/v1/query                       STK and C2B payments received (not
                                                      reversed) from StartDate to EndDate (EAT,
                                                      inside the last 48 h), 100 rows from
                                                      OffSetValue; "1001" when none are left;
                                                      unregistered: 400 400.003.01

Every POST needs "Authorization: Bearer <token>"; each new token retires the previous one.
Errors are {"requestId", "errorCode", "errorMessage"}: 401 404.001.03 bad or expired token,
401 404.001.04 missing header, 400 400.002.02 "Bad Request - Invalid <Field>", 400 400.002.05
unreadable JSON, 500 500.001.1001 wrong STK password or unknown STK shortcode, 500 500.002.1001
"Duplicate OriginatorConversationID.", 500 500.003.02 when more than `pending_callbacks_max` wait.
Callback URLs containing "mpesa", "safaricom", "query", "sql", "exe", "cmd" are refused like
Daraja does (so a secret path token should be hex). SecurityCredential must be
base64(RSA PKCS#1 v1.5 of the initiator password) under the certificate at
GET /sandbox/certificate (a fresh key pair per start); otherwise the Result carries 2001.

Money: customers (any well-formed 2547/2541 number, created with the default balance) and one
organisation whose Working Account receives STK and C2B payments and whose Utility Account pays
B2C. No charges. The callback (and the money) moves `callback_delay_s` after the request.

Test phone numbers (the number ends in the code it triggers)
-------------------------------------------------------------
254700000001  STK 1 insufficient balance;   B2C 1 "balance is insufficient" (float)
254700001001  STK 1001 subscriber busy (unable to lock subscriber)
254700001019  STK 1019 transaction expired
254700001032  STK 1032 cancelled by user
254700001036  STK 1036 SMSC ACK timeout
254700001037  STK 1037 DS timeout, user cannot be reached
254700002001  STK 2001 wrong PIN;          B2C 2001 initiator information invalid
254700002040  B2C 2040 unregistered customer
254700008006  B2C 8006 security credential locked
254700000408  STK and B2C: the money moves but no callback ever comes (ask STK Query or
              Transaction Status: the "unknown" case)
254700000504  B2C: the money moves and QueueTimeOutURL hears ResultCode 1 "The service request
              has timed out." (never a failure: the payout happened)
A customer whose balance is short genuinely gets STK 1; a short Utility Account gives B2C 1.
Unregistered customers (admin) give B2C 2040; STK over KES 250,000 gives 3; B2C under KES 10
gives 2, over 250,000 gives 3, a payee pushed over KES 500,000 gives 8.

Admin API (JSON; amounts in cents except the customer's `amount`, which is typed in shillings)
-----------------------------------------------------------------------------------------------
GET  /sandbox/certificate            PEM of the certificate to encrypt SecurityCredential with
GET  /sandbox/balances               {"organisation": {...}, "customers": [{...}]}
GET|PUT /sandbox/customers/{phone}   {"balance_cents", "first_name", "middle_name",
                                      "last_name", "registered"} (PUT: any subset)
GET|PUT /sandbox/organisation        {"shortcode", "name", "working_account_cents",
                                      "utility_account_cents"} (PUT: either balance)
GET  /sandbox/transactions[?phone=]  {"transactions": [{"transaction_id", "kind" (stk, c2b, b2c,
                                      reversal), "amount_cents", "phone", "reversed_by", ...}]}
GET  /sandbox/registrations          C2B URLs by shortcode
POST /sandbox/faults                 queue a fault, answer 201 with it (see below)
GET|DELETE /sandbox/faults           {"faults": [...]} still waiting (DELETE clears them)
GET  /sandbox/callbacks[?kind=]      {"callbacks": [{"id", "kind", "url", "body", "state"
                                      (pending, held, delivered, failed, dropped),
                                      "response_status", "response_body", "attempts"}],
                                      "waiting": n}
POST /sandbox/callbacks/flush        {"timeout_s": 10}: settle everything and deliver every
                                      callback now (delays skipped, held ones released newest
                                      first), then answer {"done": true, "waiting": 0};
                                      408 with done false if time ran out
POST /sandbox/c2b/pay                {"phone", "amount" (KES), "account"}: ValidationURL first
                                      (if registered), then the money, then ConfirmationURL;
                                      answers {"status": completed|rejected|failed,
                                      "TransID", "ResultCode"}
POST /sandbox/clock/advance          {"seconds"}: move the sandbox clock (token expiry)
POST /sandbox/reset                  money, logs, faults, callbacks start over; work in
                                      progress is cancelled (tokens, keys, clock and the
                                      uniqueness of receipts survive)

Callback kinds: stk, b2c_result, b2c_queue_timeout, c2b_validation, c2b_confirmation,
balance_result, status_result, reversal_result, and balance_queue_timeout,
status_queue_timeout, reversal_queue_timeout (a timeout fault with queue_timeout).

Faults: {"kind": stk | stk_query | b2c | c2b | c2b_register | balance | status | reversal |
pull_register | pull | oauth | any, "phone": optional, "times": N (default 1), "action": ...}.
"any" includes oauth. "phone" matches STK PhoneNumber, B2C PartyB, C2B Msisdn/phone; a fault
with a phone never matches balance, status, reversal, pull_register, pull or oauth. Actions:
  result_code   {"result_code": 1032 or "R000001"}: the result callback carries it, nothing moves
  timeout       money moves, no result; {"queue_timeout": true} notifies QueueTimeOutURL
                (B2C and the initiator APIs: a reversal is made, only the timeout comes)
  http_500      500 {"errorCode": "500.003.1001"}; http_429: 429 {"errorCode": "429.001.01"}
  invalid_token 401 404.001.03 even with a good token
  garbage       an HTML body, {"http_status": 200 by default}
  slow          {"delay_s"}: the answer comes late (the request is processed)
  delay         {"delay_s"}: the callback comes that much later
  duplicate     {"copies": 2}: the same callback several times
  drop          the transaction completes but no callback is sent
  reorder       the next N callbacks are held and sent newest first once N wait (or on flush)
http_500, http_429 and garbage take {"processed": true} to do the work but lose the answer.
A request takes at most one fault of each family (answer, outcome, callback journey).

Deterministic tests: set callback_delay_s=0 (or anything), make requests, then
POST /sandbox/callbacks/flush; when it answers, every callback has been delivered and the
client has answered (each record holds the status). Delivery is one POST per callback, like
Daraja; it is retried (at most `callback_connect_attempts` in all) only when the connection
could not be made at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deni.sandbox import admin, daraja, payloads
from deni.sandbox.config import SandboxConfig
from deni.sandbox.core import Sandbox

__all__ = ["SandboxConfig", "create_sandbox_app", "serve"]


def create_sandbox_app(config: SandboxConfig | None = None) -> Starlette:
    sandbox = Sandbox(config or SandboxConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.dispatcher.start()
        try:
            yield
        finally:
            await sandbox.dispatcher.stop()

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 405:
            code, message = "405.001", "Method Not Allowed"
        else:
            code, message = "404.001.01", "Resource not found"
        body = payloads.error(sandbox.mint.request_id(), code, message)
        return JSONResponse(body, status_code=error.status_code)

    app = Starlette(
        routes=[*daraja.routes(sandbox), *admin.routes(sandbox)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.sandbox = sandbox
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8100,
    config: SandboxConfig | None = None,
    *,
    own_logging: bool = True,
) -> None:
    """Run the sandbox until interrupted (the `deni sandbox` command). `own_logging=False`
    leaves logging as the caller set it up (uvicorn's records go through its handlers)."""
    logging_setup = {} if own_logging else {"log_config": None}
    uvicorn.run(
        create_sandbox_app(config),
        host=host,
        port=port,
        ws="none",
        log_level="info",
        **logging_setup,  # type: ignore[arg-type]
    )
