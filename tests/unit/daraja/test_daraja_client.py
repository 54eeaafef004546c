"""DarajaClient against recorded Daraja answers (respx as the transport)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from structlog.testing import capture_logs
from tests.fakes import ManualClock
from tests.unit.daraja.support import (
    BASE_URL,
    PATH_TOKEN,
    SANDBOX_PASSKEY,
    START,
    TOKEN,
    fixture_json,
    make_config,
    recorded,
)

from deni.adapters.daraja import errors
from deni.adapters.daraja.client import DarajaClient, DarajaConfig, check_callback_url
from deni.adapters.daraja.credentials import stk_password
from deni.adapters.daraja.tokens import InMemoryTokenStore

STK_PUSH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY = "/mpesa/stkpushquery/v1/query"
B2C = "/mpesa/b2c/v3/paymentrequest"
C2B_V2 = "/mpesa/c2b/v2/registerurl"
C2B_V1 = "/mpesa/c2b/v1/registerurl"
BALANCE = "/mpesa/accountbalance/v1/query"
STATUS = "/mpesa/transactionstatus/v1/query"
REVERSAL = "/mpesa/reversal/v1/request"
PHONE = "254708374149"
OCID = "600997_Test_32et3241ed8yu"
HOOKS = f"https://deni.example/hooks/{PATH_TOKEN}"


def sent_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body = json.loads(route.calls[index].request.content)
    assert isinstance(body, dict)
    return body


def bearer(route: respx.Route, index: int = -1) -> str:
    return str(route.calls[index].request.headers["Authorization"])


def stk_push(client: DarajaClient, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "phone": PHONE,
        "amount_cents": 100,
        "account_reference": "DENI-LN42",
        "description": "Loan repay",
    }
    arguments.update(overrides)
    return client.stk_push(**arguments)


def b2c(client: DarajaClient, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "phone": "254705912645",
        "amount_cents": 1_000,
        "originator_conversation_id": OCID,
        "remarks": "Loan payout",
        "occasion": "LN42",
    }
    arguments.update(overrides)
    return client.b2c_payment(**arguments)


# --- OAuth ------------------------------------------------------------------------------------


class TestOAuth:
    def test_fetches_with_basic_auth_and_the_grant_type(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        stk_push(client)
        request = router.routes["oauth"].calls.last.request
        assert request.url.params["grant_type"] == "client_credentials"
        expected = base64.b64encode(b"consumer-key:consumer-secret").decode()
        assert request.headers["Authorization"] == f"Basic {expected}"

    def test_expires_in_as_a_string(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        token_store: InMemoryTokenStore,
    ) -> None:
        router.routes["oauth"].mock(return_value=recorded("oauth_token_string_expiry.json"))
        router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        stk_push(client)
        assert token_store.get() == (TOKEN, START + timedelta(seconds=3599))

    def test_token_is_reused_then_refreshed_before_expiry(
        self, client: DarajaClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        stk_push(client)
        stk_push(client)
        assert router.routes["oauth"].call_count == 1
        clock.advance(timedelta(seconds=3599 - 5 * 60 - 1))
        stk_push(client)
        assert router.routes["oauth"].call_count == 1
        clock.advance(timedelta(seconds=1))  # now within 5 minutes of expiry
        stk_push(client)
        assert router.routes["oauth"].call_count == 2
        assert all(bearer(route, i) == f"Bearer {TOKEN}" for i in range(4))

    def test_uses_the_token_in_the_shared_store(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        token_store: InMemoryTokenStore,
    ) -> None:
        token_store.put("stored-by-another-process", START + timedelta(hours=1))
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        stk_push(client)
        assert router.routes["oauth"].call_count == 0
        assert bearer(route) == "Bearer stored-by-another-process"

    @pytest.mark.parametrize(
        ("response", "error"),
        [
            (httpx.Response(400), errors.OAuthFailed),  # wrong key/secret: empty 400
            (recorded("error_oauth_invalid_grant.json", 400), errors.OAuthFailed),
            (httpx.Response(500, text="<html>oops</html>"), errors.TokenUnavailable),
            (recorded("error_spike_arrest.json", 500), errors.TokenUnavailable),
            (httpx.Response(200, text="not json"), errors.TokenUnavailable),
            (
                httpx.Response(200, json={"access_token": "", "expires_in": 3599}),
                errors.TokenUnavailable,
            ),
        ],
    )
    def test_token_failures_never_send_the_call(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        response: httpx.Response,
        error: type[errors.DarajaError],
    ) -> None:
        router.routes["oauth"].mock(return_value=response)
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        with pytest.raises(error) as raised:
            b2c(client)
        assert route.call_count == 0
        assert raised.value.outcome_unknown is False

    def test_token_fetch_timeout_is_unavailable_but_not_sent(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.routes["oauth"].mock(side_effect=httpx.ReadTimeout("slow"))
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        with pytest.raises(errors.DarajaUnavailable) as raised:
            b2c(client)
        assert raised.value.maybe_sent is False
        assert route.call_count == 0


class TestInvalidTokenRetry:
    def test_refreshes_and_retries_once(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        token_store: InMemoryTokenStore,
    ) -> None:
        token_store.put("killed-by-another-fetch", START + timedelta(hours=1))
        route = router.post(B2C).mock(
            side_effect=[
                recorded("error_invalid_access_token.json", 404),
                recorded("b2c_response.json"),
            ]
        )
        response = b2c(client)
        assert response.conversation_id == "AG_20240706_20106e9209f64bebd05b"
        assert route.call_count == 2
        assert bearer(route, 0) == "Bearer killed-by-another-fetch"
        assert bearer(route, 1) == f"Bearer {TOKEN}"
        # The same request both times: same OriginatorConversationID, same everything.
        assert sent_json(route, 0) == sent_json(route, 1)
        assert router.routes["oauth"].call_count == 1

    @pytest.mark.parametrize(
        ("code", "status"), [("400.003.01", 400), ("401.002.01", 401), ("404.001.03", 404)]
    )
    def test_every_invalid_token_code(
        self, client: DarajaClient, router: respx.MockRouter, code: str, status: int
    ) -> None:
        body = {"requestId": "1-2-3", "errorCode": code, "errorMessage": "Invalid Access Token"}
        route = router.post(STK_QUERY).mock(
            side_effect=[
                httpx.Response(status, json=body),
                recorded("stk_query_response.json"),
            ]
        )
        assert client.stk_query(checkout_request_id="ws_CO_13012021093521236557").paid
        assert route.call_count == 2

    def test_not_twice(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(STK_PUSH).mock(
            return_value=recorded("error_invalid_access_token.json", 404)
        )
        with pytest.raises(errors.InvalidAccessToken) as raised:
            stk_push(client)
        assert route.call_count == 2
        assert router.routes["oauth"].call_count == 2  # the first token, then one refresh
        assert raised.value.error_code == "404.001.03"
        assert raised.value.request_id == "10219-2484793-1"

    def test_api_product_missing_is_not_a_token_problem(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        route = router.post(C2B_V2).mock(return_value=recorded("error_no_apiproduct.json", 401))
        with pytest.raises(errors.ApiProductNotEnabled):
            client.register_c2b_urls()
        assert route.call_count == 1


# --- The calls --------------------------------------------------------------------------------


class TestStkPush:
    def test_body_and_answer(
        self, client: DarajaClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        response = stk_push(client, amount_cents=150_000)
        timestamp = "20261126090000"  # START in Nairobi time
        assert sent_json(route) == {
            "BusinessShortCode": "174379",
            "Password": stk_password("174379", SANDBOX_PASSKEY, timestamp),
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": "1500",
            "PartyA": PHONE,
            "PartyB": "174379",
            "PhoneNumber": PHONE,
            "CallBackURL": f"{HOOKS}/stk",
            "AccountReference": "DENI-LN42",
            "TransactionDesc": "Loan repay",
        }
        request = route.calls.last.request
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"] == "application/json"
        assert response.accepted
        assert response.merchant_request_id == "2654-4b64-97ff-b827b542881d3130"
        assert response.checkout_request_id == "ws_CO_1007202409152617172396192"
        assert response.customer_message == "Success. Request accepted for processing"

    def test_password_uses_the_body_timestamp(
        self, client: DarajaClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        clock.advance(timedelta(hours=15, seconds=7))
        stk_push(client)
        body = sent_json(route)
        assert body["Timestamp"] == "20261127000007"
        decoded = base64.b64decode(body["Password"]).decode()
        assert decoded == f"174379{SANDBOX_PASSKEY}{body['Timestamp']}"

    def test_explicit_timeouts(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        stk_push(client)
        timeouts = route.calls.last.request.extensions["timeout"]
        assert timeouts == {"connect": 5.0, "read": 30.0, "write": 30.0, "pool": 30.0}

    def test_buy_goods_till(self, router: respx.MockRouter, clock: ManualClock) -> None:
        config = make_config(stk_transaction_type="CustomerBuyGoodsOnline", stk_party_b="5551234")
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        with DarajaClient(
            config, clock=clock.now, transport=httpx.MockTransport(router.handler)
        ) as client:
            stk_push(client, callback_url="https://deni.example/hooks/other/stk")
        body = sent_json(route)
        assert body["TransactionType"] == "CustomerBuyGoodsOnline"
        assert body["PartyB"] == "5551234"
        assert body["CallBackURL"] == "https://deni.example/hooks/other/stk"

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"amount_cents": 150}, "whole shillings"),
            ({"amount_cents": 0}, "positive"),
            ({"amount_cents": 25_000_100}, "KES 1 to KES 250,000"),
            ({"phone": "0708374149"}, "2547XXXXXXXX"),
            ({"phone": "+254708374149"}, "2547XXXXXXXX"),
            ({"phone": "254208374149"}, "2547XXXXXXXX"),
            ({"account_reference": "THIRTEEN-CHAR"}, "account_reference"),
            ({"account_reference": ""}, "account_reference"),
            ({"description": "Fourteen chars"}, "description"),
            ({"callback_url": "https://deni.example/mpesa/stk"}, "mpesa"),
            ({"callback_url": "https://deni.example/hooks/ stk"}, "whitespace"),
        ],
    )
    def test_refuses_bad_arguments_before_sending(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        overrides: dict[str, Any],
        message: str,
    ) -> None:
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        with pytest.raises(ValueError, match=message):
            stk_push(client, **overrides)
        assert route.call_count == 0


class TestStkQuery:
    def test_paid(self, client: DarajaClient, router: respx.MockRouter, clock: ManualClock) -> None:
        route = router.post(STK_QUERY).mock(return_value=recorded("stk_query_response.json"))
        response = client.stk_query(checkout_request_id="ws_CO_13012021093521236557")
        assert sent_json(route) == {
            "BusinessShortCode": "174379",
            "Password": stk_password("174379", SANDBOX_PASSKEY, "20261126090000"),
            "Timestamp": "20261126090000",
            "CheckoutRequestID": "ws_CO_13012021093521236557",
        }
        assert response.paid
        assert response.result_code == "0"
        assert response.merchant_request_id == "22205-34066-1"

    def test_cancelled(self, client: DarajaClient, router: respx.MockRouter) -> None:
        router.post(STK_QUERY).mock(return_value=recorded("stk_query_response_cancelled.json"))
        response = client.stk_query(checkout_request_id="ws_CO_27072017151044001")
        assert response.accepted
        assert not response.paid
        assert response.result_code == "1032"
        assert response.result_desc == "[STK_CB - ]Request cancelled by user"

    def test_result_code_as_a_number(self, client: DarajaClient, router: respx.MockRouter) -> None:
        body = fixture_json("stk_query_response_cancelled.json") | {"ResultCode": 1032}
        router.post(STK_QUERY).mock(return_value=httpx.Response(200, json=body))
        response = client.stk_query(checkout_request_id="ws_CO_27072017151044001")
        assert response.result_code == "1032"

    def test_still_on_the_prompt_is_pending(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(STK_QUERY).mock(
            return_value=recorded("error_transaction_being_processed.json", 500)
        )
        with pytest.raises(errors.TransactionInProgress) as raised:
            client.stk_query(checkout_request_id="ws_CO_20022018230142206")
        assert raised.value.retryable
        assert raised.value.http_status == 500

    def test_safaricoms_trailing_comma_is_garbage(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(STK_QUERY).mock(return_value=recorded("stk_query_response_trailing_comma.txt"))
        with pytest.raises(errors.GarbageResponse, match="not JSON"):
            client.stk_query(checkout_request_id="ws_CO_13012021093521236557")


class TestB2C:
    def test_body_and_answer(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        response = b2c(client)
        assert sent_json(route) == {
            "OriginatorConversationID": OCID,
            "InitiatorName": "testapi",
            "SecurityCredential": "c2VjdXJpdHktY3JlZGVudGlhbA==",
            "CommandID": "BusinessPayment",
            "Amount": "10",
            "PartyA": "600992",
            "PartyB": "254705912645",
            "Remarks": "Loan payout",
            "QueueTimeOutURL": f"{HOOKS}/b2c/timeout",
            "ResultURL": f"{HOOKS}/b2c/result",
            "Occassion": "LN42",
        }
        assert response.accepted
        assert response.originator_conversation_id == OCID
        assert response.conversation_id == "AG_20240706_20106e9209f64bebd05b"
        assert response.response_description == "Accept the service request successfully."

    def test_occasion_is_optional(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        b2c(client, occasion=None, command_id="PromotionPayment")
        body = sent_json(route)
        assert "Occassion" not in body
        assert body["CommandID"] == "PromotionPayment"

    def test_security_credential_from_password_and_certificate(
        self,
        router: respx.MockRouter,
        clock: ManualClock,
        rsa_key: rsa.RSAPrivateKey,
        certificate_pem: str,
    ) -> None:
        config = make_config(
            security_credential=None,
            initiator_password="Safaricom999!*!",
            certificate_pem=certificate_pem,
        )
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        with DarajaClient(
            config, clock=clock.now, transport=httpx.MockTransport(router.handler)
        ) as client:
            b2c(client)
            b2c(client)
        credentials = [sent_json(route, i)["SecurityCredential"] for i in range(2)]
        assert credentials[0] == credentials[1]  # computed once
        plain = rsa_key.decrypt(base64.b64decode(credentials[0]), padding.PKCS1v15())
        assert plain == b"Safaricom999!*!"

    def test_duplicate_originator_conversation_id(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(B2C).mock(
            return_value=recorded("error_duplicate_originator_conversation_id.json", 500)
        )
        with pytest.raises(errors.DuplicateOriginatorConversationId) as raised:
            b2c(client)
        assert not raised.value.outcome_unknown
        assert not raised.value.retryable

    def test_same_code_other_message_is_a_server_error(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(B2C).mock(return_value=recorded("error_system_internal_error.json", 500))
        with pytest.raises(errors.ServerError) as raised:
            b2c(client)
        assert raised.value.outcome_unknown

    def test_an_answer_for_another_payout_is_not_trusted(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        body = fixture_json("b2c_response.json") | {"OriginatorConversationID": "someone-else"}
        router.post(B2C).mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(errors.GarbageResponse) as raised:
            b2c(client)
        assert raised.value.outcome_unknown

    @pytest.mark.parametrize(
        ("failure", "maybe_sent"),
        [
            (httpx.ConnectError("refused"), False),
            (httpx.ConnectTimeout("no route"), False),
            (httpx.PoolTimeout("pool"), False),
            (httpx.ReadTimeout("slow"), True),
            (httpx.WriteTimeout("slow"), True),
            (httpx.ReadError("reset"), True),
            (httpx.RemoteProtocolError("cut"), True),
        ],
    )
    def test_transport_failures(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        failure: Exception,
        maybe_sent: bool,
    ) -> None:
        route = router.post(B2C).mock(side_effect=failure)
        with pytest.raises(errors.DarajaUnavailable) as raised:
            b2c(client)
        assert raised.value.maybe_sent is maybe_sent
        assert raised.value.outcome_unknown is maybe_sent
        assert raised.value.retryable
        assert isinstance(raised.value.__cause__, httpx.TransportError)
        assert route.call_count == 1  # no retry inside the client

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"amount_cents": 900}, "KES 10 to KES 250,000"),
            ({"amount_cents": 1_050}, "whole shillings"),
            ({"originator_conversation_id": ""}, "originator_conversation_id"),
            ({"originator_conversation_id": "has space"}, "originator_conversation_id"),
            ({"originator_conversation_id": "x" * 65}, "originator_conversation_id"),
            ({"remarks": "x"}, "remarks"),
            ({"remarks": "x" * 101}, "remarks"),
            ({"occasion": ""}, "occasion"),
            ({"phone": "254705912"}, "2547XXXXXXXX"),
            ({"result_url": "http://deni.example/hooks/x/b2c"}, None),
        ],
    )
    def test_refuses_bad_arguments_before_sending(
        self,
        router: respx.MockRouter,
        clock: ManualClock,
        overrides: dict[str, Any],
        message: str | None,
    ) -> None:
        route = router.post(B2C).mock(return_value=recorded("b2c_response.json"))
        environment = "sandbox" if message else "production"
        with (
            DarajaClient(
                make_config(environment=environment, base_url=BASE_URL),
                clock=clock.now,
                transport=httpx.MockTransport(router.handler),
            ) as client,
            pytest.raises(ValueError, match=message or "HTTPS"),
        ):
            b2c(client, **overrides)
        assert route.call_count == 0


class TestC2BRegister:
    def test_body_and_answer(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(C2B_V2).mock(return_value=recorded("c2b_register_response.json"))
        response = client.register_c2b_urls()
        assert sent_json(route) == {
            "ShortCode": "600984",
            "ResponseType": "Completed",
            "ConfirmationURL": f"{HOOKS}/c2b/confirmation",
            "ValidationURL": f"{HOOKS}/c2b/validation",
        }
        assert response.accepted
        assert response.originator_conversation_id == "6e86-45dd-91ac-fd5d4178ab523408729"

    def test_v1_endpoint_and_correct_spelling(
        self, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        body = {"OriginatorConversationID": "abc", "ResponseCode": "0", "ResponseDescription": "OK"}
        route = router.post(C2B_V1).mock(return_value=httpx.Response(200, json=body))
        with DarajaClient(
            make_config(c2b_api_version="v1"),
            clock=clock.now,
            transport=httpx.MockTransport(router.handler),
        ) as client:
            response = client.register_c2b_urls(response_type="Cancelled", shortcode="600730")
        assert sent_json(route)["ResponseType"] == "Cancelled"
        assert sent_json(route)["ShortCode"] == "600730"
        assert response.originator_conversation_id == "abc"

    def test_already_registered(self, client: DarajaClient, router: respx.MockRouter) -> None:
        router.post(C2B_V2).mock(return_value=recorded("error_urls_already_registered.json", 500))
        with pytest.raises(errors.UrlsAlreadyRegistered):
            client.register_c2b_urls()

    def test_soap_fault(self, client: DarajaClient, router: respx.MockRouter) -> None:
        router.post(C2B_V2).mock(return_value=recorded("error_c2b_register_soap_fault.json", 500))
        with pytest.raises(errors.ServerError, match="SCO-AddURLVault"):
            client.register_c2b_urls()


class TestAsyncQueries:
    def test_account_balance(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(BALANCE).mock(return_value=recorded("conversation_ack.json"))
        response = client.account_balance()
        assert sent_json(route) == {
            "Initiator": "testapi",
            "SecurityCredential": "c2VjdXJpdHktY3JlZGVudGlhbA==",
            "CommandID": "AccountBalance",
            "PartyA": "600992",
            "IdentifierType": "4",
            "Remarks": "Balance check",
            "QueueTimeOutURL": f"{HOOKS}/balance/timeout",
            "ResultURL": f"{HOOKS}/balance/result",
        }
        assert response.conversation_id == "AG_20200206_00005e091a8ec6b9eac5"
        assert response.originator_conversation_id == "16917-22577599-3"

    def test_transaction_status_by_originator_conversation_id(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        route = router.post(STATUS).mock(return_value=recorded("conversation_ack.json"))
        response = client.transaction_status(originator_conversation_id=OCID)
        assert sent_json(route) == {
            "Initiator": "testapi",
            "SecurityCredential": "c2VjdXJpdHktY3JlZGVudGlhbA==",
            "CommandID": "TransactionStatusQuery",
            "OriginalConversationID": OCID,
            "PartyA": "600992",
            "IdentifierType": "4",
            "ResultURL": f"{HOOKS}/status/result",
            "QueueTimeOutURL": f"{HOOKS}/status/timeout",
            "Remarks": "Status check",
        }
        assert response.accepted

    def test_transaction_status_by_receipt(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        route = router.post(STATUS).mock(return_value=recorded("conversation_ack.json"))
        client.transaction_status(transaction_id="NEF61H8J60", shortcode="600984", occasion="OK")
        body = sent_json(route)
        assert body["TransactionID"] == "NEF61H8J60"
        assert body["PartyA"] == "600984"
        assert body["Occasion"] == "OK"
        assert "OriginalConversationID" not in body

    def test_transaction_status_needs_an_id(self, client: DarajaClient) -> None:
        with pytest.raises(ValueError, match="transaction_id or originator_conversation_id"):
            client.transaction_status()

    def test_reversal(self, client: DarajaClient, router: respx.MockRouter) -> None:
        route = router.post(REVERSAL).mock(return_value=recorded("conversation_ack.json"))
        client.reversal(transaction_id="PDU91HIVIT", amount_cents=20_000, remarks="Overpaid")
        assert sent_json(route) == {
            "Initiator": "testapi",
            "SecurityCredential": "c2VjdXJpdHktY3JlZGVudGlhbA==",
            "CommandID": "TransactionReversal",
            "TransactionID": "PDU91HIVIT",
            "Amount": "200",
            "ReceiverParty": "600984",
            "RecieverIdentifierType": "11",
            "ResultURL": f"{HOOKS}/reversal/result",
            "QueueTimeOutURL": f"{HOOKS}/reversal/timeout",
            "Remarks": "Overpaid",
        }

    def test_reversal_refuses_part_shillings(self, client: DarajaClient) -> None:
        with pytest.raises(ValueError, match="whole shillings"):
            client.reversal(transaction_id="PDU91HIVIT", amount_cents=20_050, remarks="Overpaid")


# --- Error mapping ----------------------------------------------------------------------------


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("response", "error", "code"),
        [
            (recorded("error_invalid_shortcode.json", 400), errors.BadRequest, "400.002.02"),
            (recorded("error_invalid_callback_url.json", 400), errors.BadRequest, "400.002.02"),
            (recorded("error_spike_arrest.json", 500), errors.RateLimited, "500.003.02"),
            (recorded("error_quota_violation.json", 500), errors.RateLimited, "500.003.03"),
            (recorded("error_rate_limited_429.json", 429), errors.RateLimited, "429.001.01"),
            (httpx.Response(429), errors.RateLimited, None),
            (
                recorded("error_unable_to_lock_subscriber.json", 500),
                errors.SubscriberBusy,
                "500.001.1001",
            ),
            (
                recorded("error_wrong_credentials.json", 500),
                errors.MerchantRejected,
                "500.001.1001",
            ),
            (recorded("error_no_apiproduct.json", 401), errors.ApiProductNotEnabled, "401.003.01"),
            (httpx.Response(500), errors.ServerError, None),
            (
                httpx.Response(503, text="<html>Service Unavailable</html>"),
                errors.ServerError,
                None,
            ),
            (httpx.Response(404, text="no such path"), errors.BadRequest, None),
            (httpx.Response(200), errors.GarbageResponse, None),
            (httpx.Response(200, text="<html>"), errors.GarbageResponse, None),
            (httpx.Response(200, json=[1, 2]), errors.GarbageResponse, None),
            (httpx.Response(200, json={"ResponseCode": "0"}), errors.GarbageResponse, None),
            (httpx.Response(302, headers={"Location": "/x"}), errors.GarbageResponse, None),
            # An error body under a 200 is still an error.
            (recorded("error_invalid_shortcode.json", 200), errors.BadRequest, "400.002.02"),
        ],
    )
    def test_stk_push(
        self,
        client: DarajaClient,
        router: respx.MockRouter,
        response: httpx.Response,
        error: type[errors.DarajaError],
        code: str | None,
    ) -> None:
        router.post(STK_PUSH).mock(return_value=response)
        with pytest.raises(error) as raised:
            stk_push(client)
        assert type(raised.value) is error
        assert raised.value.error_code == code
        assert raised.value.http_status == response.status_code

    def test_fields_are_typed(self, client: DarajaClient, router: respx.MockRouter) -> None:
        router.post(STK_PUSH).mock(return_value=recorded("error_invalid_shortcode.json", 400))
        with pytest.raises(errors.BadRequest) as raised:
            stk_push(client)
        error = raised.value
        assert error.request_id == "1c5b-4ba8-815c-ac45c57a3db01495926"
        assert error.error_code == "400.002.02"
        assert error.error_message == "Bad Request - Invalid BusinessShortCode"
        assert error.http_status == 400
        assert not error.retryable
        assert not error.outcome_unknown
        assert "400.002.02" in str(error)

    def test_response_code_not_zero_is_not_accepted(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        body = fixture_json("stk_push_response.json") | {
            "ResponseCode": "1",
            "ResponseDescription": "Rejected",
        }
        router.post(STK_PUSH).mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(errors.NotAccepted, match="Rejected") as raised:
            stk_push(client)
        assert raised.value.error_code == "1"

    def test_garbage_names_fields_but_never_values(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        body = {"ResponseCode": "0", "MerchantRequestID": ["secret-looking-value"]}
        router.post(STK_PUSH).mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(errors.GarbageResponse) as raised:
            stk_push(client)
        assert "MerchantRequestID" in str(raised.value)
        assert "secret-looking-value" not in str(raised.value)

    def test_error_messages_are_bounded(
        self, client: DarajaClient, router: respx.MockRouter
    ) -> None:
        router.post(STK_PUSH).mock(return_value=httpx.Response(502, text="x" * 100_000))
        with pytest.raises(errors.ServerError) as raised:
            stk_push(client)
        assert len(raised.value.error_message) <= errors.ERROR_MESSAGE_CHARS_MAX


# --- Configuration ----------------------------------------------------------------------------


class TestConfig:
    def test_environments(self) -> None:
        assert make_config().resolved_base_url == "https://sandbox.safaricom.co.ke"
        production = make_config(environment="production")
        assert production.resolved_base_url == "https://api.safaricom.co.ke"
        local = make_config(base_url="http://127.0.0.1:8001/")
        assert local.resolved_base_url == "http://127.0.0.1:8001"

    def test_production_calls_go_to_the_production_host(self, clock: ManualClock) -> None:
        router = respx.MockRouter(base_url="https://api.safaricom.co.ke")
        router.get("/oauth/v1/generate").mock(return_value=recorded("oauth_token.json"))
        route = router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        with DarajaClient(
            make_config(environment="production"),
            clock=clock.now,
            transport=httpx.MockTransport(router.handler),
        ) as client:
            stk_push(client)
        assert route.call_count == 1

    def test_caller_owned_http_client_is_left_open(
        self, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        router.post(STK_PUSH).mock(return_value=recorded("stk_push_response.json"))
        http = httpx.Client(transport=httpx.MockTransport(router.handler))
        with DarajaClient(make_config(), clock=clock.now, http=http) as client:
            stk_push(client)
        assert not http.is_closed
        http.close()

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"environment": "staging"}, "environment"),
            ({"consumer_secret": ""}, "consumer_secret"),
            ({"stk_shortcode": "17437a"}, "stk_shortcode"),
            ({"security_credential": None}, "security_credential"),
            ({"callback_path_token": "short"}, "callback_path_token"),
            ({"callback_path_token": "a" * 13 + "cmd" + "b" * 10}, "cmd"),
            ({"callback_base_url": "https://safaricom-hooks.example"}, "safaricom"),
            ({"callback_base_url": "http://deni.example", "environment": "production"}, "HTTPS"),
            ({"timeout_s": 0}, "timeout_s"),
            ({"connect_timeout_s": 1000}, "connect_timeout_s"),
        ],
    )
    def test_refuses_bad_configuration(self, overrides: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            make_config(**overrides)

    def test_repr_hides_secrets(self, certificate_pem: str) -> None:
        config = make_config(initiator_password="Initiator!Pass", certificate_pem=certificate_pem)
        text = repr(config)
        for secret in (
            "consumer-secret",
            "consumer-key",
            SANDBOX_PASSKEY,
            "Initiator!Pass",
            "BEGIN CERTIFICATE",
            "c2VjdXJpdHktY3JlZGVudGlhbA==",
            PATH_TOKEN,
        ):
            assert secret not in text

    @pytest.mark.parametrize(
        "url",
        [
            "https://deni.example/MPESA/cb",
            "https://deni.example/m-pesa/cb",
            "https://deni.example/hooks/Query",
            "https://deni.example/hooks/exec",
            "https://deni.example/hooks/SQL",
        ],
    )
    def test_forbidden_callback_words(self, url: str) -> None:
        with pytest.raises(ValueError, match="refuses"):
            check_callback_url(url, environment="sandbox")

    def test_http_callbacks_allowed_in_sandbox_only(self) -> None:
        url = "http://127.0.0.1:8000/hooks/x/stk"
        assert check_callback_url(url, environment="sandbox") == url
        with pytest.raises(ValueError, match="HTTPS"):
            check_callback_url(url, environment="production")


class TestLogging:
    def test_logs_nothing_secret(
        self, router: respx.MockRouter, clock: ManualClock, certificate_pem: str
    ) -> None:
        config = make_config(
            security_credential=None,
            initiator_password="Initiator!Pass",
            certificate_pem=certificate_pem,
        )
        router.post(B2C).mock(
            side_effect=[
                recorded("error_invalid_access_token.json", 404),
                recorded("b2c_response.json"),
            ]
        )
        router.post(STK_PUSH).mock(side_effect=httpx.ReadTimeout("slow"))
        with (
            capture_logs() as logs,
            DarajaClient(
                config, clock=clock.now, transport=httpx.MockTransport(router.handler)
            ) as client,
        ):
            b2c(client)
            with pytest.raises(errors.DarajaUnavailable):
                stk_push(client)
        assert logs, "the calls are logged"
        text = repr(logs)
        for secret in (
            TOKEN,
            "consumer-secret",
            "Initiator!Pass",
            SANDBOX_PASSKEY,
            PHONE,
            "254705912645",
            PATH_TOKEN,
            "Basic ",
            "Bearer",
        ):
            assert secret not in text
        assert {"daraja.response", "daraja.token_refused", "daraja.unavailable"} <= {
            entry["event"] for entry in logs
        }


def test_default_transport_is_httpx(clock: ManualClock) -> None:
    # Without a transport the client builds its own httpx.Client with the configured timeouts.
    config: DarajaConfig = make_config(timeout_s=12.5, connect_timeout_s=2.0)
    with DarajaClient(config, clock=clock.now) as client:
        assert client._http.timeout == httpx.Timeout(12.5, connect=2.0)
    assert replace(config, timeout_s=1.0).timeout_s == 1.0
