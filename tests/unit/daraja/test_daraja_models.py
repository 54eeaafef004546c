"""Payload models: Daraja's exact field names out, lenient types in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.unit.daraja.support import fixture_json

from deni.adapters.daraja.models import (
    B2CPaymentRequest,
    C2BRegisterUrlResponse,
    OAuthTokenResponse,
    ReversalRequest,
    StkPushResponse,
    StkQueryResponse,
    TransactionStatusRequest,
)

B2C_FIELDS = {
    "originator_conversation_id": "abc_123",
    "initiator_name": "testapi",
    "security_credential": "SECRET-CREDENTIAL",
    "command_id": "BusinessPayment",
    "amount": 10,
    "party_a": "600992",
    "party_b": "254705912645",
    "remarks": "Loan payout",
    "queue_timeout_url": "https://deni.example/hooks/t/b2c/timeout",
    "result_url": "https://deni.example/hooks/t/b2c/result",
}


def test_requests_use_daraja_names_and_send_amounts_as_text() -> None:
    wire = B2CPaymentRequest(**B2C_FIELDS).to_wire()
    assert wire["Amount"] == "10"
    assert set(wire) == {
        "OriginatorConversationID",
        "InitiatorName",
        "SecurityCredential",
        "CommandID",
        "Amount",
        "PartyA",
        "PartyB",
        "Remarks",
        "QueueTimeOutURL",
        "ResultURL",
    }


def test_requests_accept_daraja_names_too() -> None:
    request = B2CPaymentRequest.model_validate(
        B2CPaymentRequest(**B2C_FIELDS).to_wire() | {"Occassion": "x"}
    )
    assert request.occasion == "x"


def test_requests_refuse_unknown_fields_and_hide_inputs() -> None:
    with pytest.raises(ValidationError) as raised:
        B2CPaymentRequest.model_validate(B2C_FIELDS | {"Occasion": "typo", "party_b": "0712"})
    text = str(raised.value)
    assert "Occasion" in text
    assert "0712" not in text  # inputs are hidden: they can be phones or credentials


def test_secrets_stay_out_of_repr() -> None:
    assert "SECRET-CREDENTIAL" not in repr(B2CPaymentRequest(**B2C_FIELDS))
    token = OAuthTokenResponse.model_validate(fixture_json("oauth_token.json"))
    assert "c9SQxWWhmdVRlyh0zh8gZDTkubVF" not in repr(token)


def test_reversal_keeps_safaricoms_spelling() -> None:
    wire = ReversalRequest(
        initiator="apiop37",
        security_credential="x",
        transaction_id="PDU91HIVIT",
        amount=200,
        receiver_party="603021",
        result_url="https://deni.example/r",
        queue_timeout_url="https://deni.example/q",
        remarks="Payment reversal",
    ).to_wire()
    assert wire["RecieverIdentifierType"] == "11"
    assert wire["CommandID"] == "TransactionReversal"


def test_transaction_status_needs_one_id() -> None:
    with pytest.raises(ValidationError, match="TransactionID or OriginalConversationID"):
        TransactionStatusRequest(
            initiator="a",
            security_credential="x",
            party_a="600992",
            result_url="https://deni.example/r",
            queue_timeout_url="https://deni.example/q",
            remarks="ok",
        )


def test_responses_take_numbers_for_strings_and_ignore_extras() -> None:
    body = fixture_json("stk_push_response.json") | {"ResponseCode": 0, "New": {"x": 1}}
    response = StkPushResponse.model_validate(body)
    assert response.response_code == "0"
    assert response.accepted
    query = StkQueryResponse.model_validate(
        fixture_json("stk_query_response.json") | {"ResultCode": 0}
    )
    assert query.paid


def test_oauth_expiry_as_number_or_text() -> None:
    assert OAuthTokenResponse.model_validate(fixture_json("oauth_token.json")).expires_in == 3599
    text = OAuthTokenResponse.model_validate(fixture_json("oauth_token_string_expiry.json"))
    assert text.expires_in == 3599


def test_c2b_register_answer_with_either_spelling() -> None:
    misspelt = C2BRegisterUrlResponse.model_validate(fixture_json("c2b_register_response.json"))
    assert misspelt.originator_conversation_id == "6e86-45dd-91ac-fd5d4178ab523408729"
    plain = C2BRegisterUrlResponse.model_validate(
        {"OriginatorConversationID": "x", "ResponseCode": "0"}
    )
    assert plain.originator_conversation_id == "x"
