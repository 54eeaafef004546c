"""Daraja request bodies and synchronous responses, as typed models.

Python names are snake_case; the wire names are Daraja's exactly (aliases), misspellings
included: `Occassion` in B2C, `RecieverIdentifierType` in reversals, `OriginatorCoversationID` in
the C2B register answer. Requests forbid unknown fields (a typo must not reach Safaricom);
responses ignore them and take numbers where strings are documented ("0" or 0), because Daraja
is not consistent about either.

This module imports nothing from Deni, so the payload models can be shared with the Daraja
sandbox if the lead moves them to a neutral package.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

# Daraja documents amounts as whole shillings and sends them as text in its own samples ("10").
Shillings = Annotated[int, Field(ge=1, le=10**9), PlainSerializer(str, return_type=str)]
# 2547XXXXXXXX / 2541XXXXXXXX: twelve digits, no "+".
Msisdn = Annotated[str, Field(pattern=r"^254[17]\d{8}$")]
Shortcode = Annotated[str, Field(pattern=r"^\d{5,7}$")]
StkTimestamp = Annotated[str, Field(pattern=r"^\d{14}$")]
Url = Annotated[str, Field(min_length=8, max_length=500, pattern=r"^https?://\S+$")]
Remarks = Annotated[str, Field(min_length=2, max_length=100)]
Occasion = Annotated[str, Field(min_length=1, max_length=100)]
# A Deni-made id: opaque to Daraja, unique per payout. Daraja publishes no length limit; the
# bound is ours.
OriginatorConversationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
# ResultURL/QueueTimeOutURL-style identifier types: 1 MSISDN, 2 till, 4 shortcode.
IdentifierType = Literal["1", "2", "4"]

RESPONSE_CODE_ACCEPTED = "0"


class DarajaRequest(BaseModel):
    # hide_input_in_errors: a refused field may be a credential or a phone number.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON body with Daraja's names; optional fields left out rather than sent null."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class DarajaResponse(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
        hide_input_in_errors=True,
    )


class AcceptedResponse(DarajaResponse):
    """The common `ResponseCode` / `ResponseDescription` pair of a synchronous answer."""

    response_code: str = Field(alias="ResponseCode")
    response_description: str = Field(default="", alias="ResponseDescription")

    @property
    def accepted(self) -> bool:
        # "Accepted for processing" only: the outcome arrives later by callback.
        return self.response_code.strip() == RESPONSE_CODE_ACCEPTED


# --- OAuth ------------------------------------------------------------------------------------


class OAuthTokenResponse(DarajaResponse):
    access_token: str = Field(min_length=1, max_length=2000, repr=False)
    # A number in the current docs, a string ("3599") in older ones and real answers.
    expires_in: int = Field(ge=1, le=24 * 3600)


# --- STK push and query ---------------------------------------------------------------------


class StkPushRequest(DarajaRequest):
    business_short_code: Shortcode = Field(alias="BusinessShortCode")
    password: str = Field(alias="Password", min_length=1, repr=False)
    timestamp: StkTimestamp = Field(alias="Timestamp")
    transaction_type: Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"] = Field(
        alias="TransactionType"
    )
    amount: Shillings = Field(alias="Amount")
    party_a: Msisdn = Field(alias="PartyA")
    party_b: Shortcode = Field(alias="PartyB")
    phone_number: Msisdn = Field(alias="PhoneNumber")
    callback_url: Url = Field(alias="CallBackURL")
    # Shown in the customer's prompt; Daraja's limits.
    account_reference: str = Field(alias="AccountReference", min_length=1, max_length=12)
    transaction_desc: str = Field(alias="TransactionDesc", min_length=1, max_length=13)


class StkPushResponse(AcceptedResponse):
    merchant_request_id: str = Field(alias="MerchantRequestID", min_length=1)
    checkout_request_id: str = Field(alias="CheckoutRequestID", min_length=1)
    customer_message: str = Field(default="", alias="CustomerMessage")


class StkQueryRequest(DarajaRequest):
    business_short_code: Shortcode = Field(alias="BusinessShortCode")
    password: str = Field(alias="Password", min_length=1, repr=False)
    timestamp: StkTimestamp = Field(alias="Timestamp")
    checkout_request_id: str = Field(alias="CheckoutRequestID", min_length=1, max_length=100)


class StkQueryResponse(AcceptedResponse):
    merchant_request_id: str = Field(alias="MerchantRequestID")
    checkout_request_id: str = Field(alias="CheckoutRequestID")
    # "0" paid, "1032" cancelled, ... (the STK result codes); a string here, an int in callbacks.
    result_code: str = Field(alias="ResultCode")
    result_desc: str = Field(default="", alias="ResultDesc")

    @property
    def paid(self) -> bool:
        return self.result_code.strip() == "0"


# --- B2C ------------------------------------------------------------------------------------


class B2CPaymentRequest(DarajaRequest):
    originator_conversation_id: OriginatorConversationId = Field(alias="OriginatorConversationID")
    initiator_name: str = Field(alias="InitiatorName", min_length=1)
    security_credential: str = Field(alias="SecurityCredential", min_length=1, repr=False)
    command_id: Literal["BusinessPayment", "SalaryPayment", "PromotionPayment"] = Field(
        alias="CommandID"
    )
    amount: Shillings = Field(alias="Amount")
    party_a: Shortcode = Field(alias="PartyA")
    party_b: Msisdn = Field(alias="PartyB")
    remarks: Remarks = Field(alias="Remarks")
    queue_timeout_url: Url = Field(alias="QueueTimeOutURL")
    result_url: Url = Field(alias="ResultURL")
    # Safaricom's spelling in its own samples.
    occasion: Occasion | None = Field(default=None, alias="Occassion")


class ConversationAck(AcceptedResponse):
    """Synchronous answer of the asynchronous APIs: the ids the result callback will carry."""

    conversation_id: str = Field(alias="ConversationID", min_length=1)
    originator_conversation_id: str = Field(alias="OriginatorConversationID", min_length=1)


class B2CPaymentResponse(ConversationAck):
    pass


# --- C2B register URL -----------------------------------------------------------------------


class C2BRegisterUrlRequest(DarajaRequest):
    short_code: Shortcode = Field(alias="ShortCode")
    # What M-PESA does when the validation URL does not answer in time.
    response_type: Literal["Completed", "Cancelled"] = Field(alias="ResponseType")
    confirmation_url: Url = Field(alias="ConfirmationURL")
    validation_url: Url = Field(alias="ValidationURL")


class C2BRegisterUrlResponse(AcceptedResponse):
    # Safaricom spells it "OriginatorCoversationID"; accept the correct spelling too.
    originator_conversation_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OriginatorCoversationID", "OriginatorConversationID"),
    )


# --- Pull transactions (production only at Safaricom) ---------------------------------------

PULL_OK = "1000"  # registered / rows found
PULL_NOTHING = "1001"  # already registered / no rows at that offset
# "2020-08-04 08:36:00", Nairobi time.
PullDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")]


class PullRegisterRequest(DarajaRequest):
    short_code: Shortcode = Field(alias="ShortCode")
    request_type: Literal["Pull"] = Field(default="Pull", alias="RequestType")
    nominated_number: Msisdn = Field(alias="NominatedNumber")
    callback_url: Url = Field(alias="CallBackURL")


class PullRegisterResponse(AcceptedResponse):
    response_ref_id: str = Field(default="", alias="ResponseRefID")
    response_code: str = Field(alias="ResponseStatus")
    response_description: str = Field(default="", alias="ResponseDescription")

    @property
    def accepted(self) -> bool:
        return self.response_code.strip() in (PULL_OK, PULL_NOTHING)


class PullQueryRequest(DarajaRequest):
    short_code: Shortcode = Field(alias="ShortCode")
    start_date: PullDate = Field(alias="StartDate")
    end_date: PullDate = Field(alias="EndDate")
    offset: Annotated[int, Field(ge=0, le=10**6), PlainSerializer(str, return_type=str)] = Field(
        alias="OffSetValue"
    )


class PullQueryResponse(AcceptedResponse):
    response_ref_id: str = Field(default="", alias="ResponseRefID")
    response_code: str = Field(alias="ResponseCode")
    response_description: str = Field(default="", alias="ResponseMessage")
    # Doubly nested in Daraja's sample: [[{...}, ...]]. Rows are read one by one
    # (callbacks.parse_pulled_row), so one unreadable row does not hide the others.
    response: list[list[dict[str, Any]]] = Field(default_factory=list, alias="Response")

    @property
    def accepted(self) -> bool:
        return self.response_code.strip() in (PULL_OK, PULL_NOTHING)

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self.response_code.strip() == PULL_NOTHING:
            return []
        return [row for group in self.response for row in group]


# --- Account balance, transaction status, reversal ------------------------------------------


class AccountBalanceRequest(DarajaRequest):
    initiator: str = Field(alias="Initiator", min_length=1)
    security_credential: str = Field(alias="SecurityCredential", min_length=1, repr=False)
    command_id: Literal["AccountBalance"] = Field(default="AccountBalance", alias="CommandID")
    party_a: Shortcode = Field(alias="PartyA")
    identifier_type: IdentifierType = Field(default="4", alias="IdentifierType")
    remarks: Remarks = Field(alias="Remarks")
    queue_timeout_url: Url = Field(alias="QueueTimeOutURL")
    result_url: Url = Field(alias="ResultURL")


class AccountBalanceResponse(ConversationAck):
    pass


class TransactionStatusRequest(DarajaRequest):
    initiator: str = Field(alias="Initiator", min_length=1)
    security_credential: str = Field(alias="SecurityCredential", min_length=1, repr=False)
    # The official sample writes "Command ID" / "Transaction ID" with spaces; its parameter table
    # and every working client use the names below.
    command_id: Literal["TransactionStatusQuery"] = Field(
        default="TransactionStatusQuery", alias="CommandID"
    )
    transaction_id: str | None = Field(
        default=None, alias="TransactionID", min_length=1, max_length=40
    )
    original_conversation_id: OriginatorConversationId | None = Field(
        default=None, alias="OriginalConversationID"
    )
    party_a: Shortcode = Field(alias="PartyA")
    identifier_type: IdentifierType = Field(default="4", alias="IdentifierType")
    result_url: Url = Field(alias="ResultURL")
    queue_timeout_url: Url = Field(alias="QueueTimeOutURL")
    remarks: Remarks = Field(alias="Remarks")
    occasion: Occasion | None = Field(default=None, alias="Occasion")

    @model_validator(mode="after")
    def _one_id_at_least(self) -> TransactionStatusRequest:
        if self.transaction_id is None and self.original_conversation_id is None:
            raise ValueError("give TransactionID or OriginalConversationID")
        return self


class TransactionStatusResponse(ConversationAck):
    pass


class ReversalRequest(DarajaRequest):
    initiator: str = Field(alias="Initiator", min_length=1)
    security_credential: str = Field(alias="SecurityCredential", min_length=1, repr=False)
    command_id: Literal["TransactionReversal"] = Field(
        default="TransactionReversal", alias="CommandID"
    )
    transaction_id: str = Field(alias="TransactionID", min_length=1, max_length=40)
    amount: Shillings = Field(alias="Amount")
    receiver_party: Shortcode = Field(alias="ReceiverParty")
    # Safaricom's spelling, and "11" is the only value its docs use for reversals.
    receiver_identifier_type: Literal["11"] = Field(default="11", alias="RecieverIdentifierType")
    result_url: Url = Field(alias="ResultURL")
    queue_timeout_url: Url = Field(alias="QueueTimeOutURL")
    remarks: Remarks = Field(alias="Remarks")
    occasion: Occasion | None = Field(default=None, alias="Occasion")
    # Not on Safaricom's reversal page, but accepted as on B2C: Deni's own id for the request,
    # by which Transaction Status can find it. Omitted when not given.
    originator_conversation_id: OriginatorConversationId | None = Field(
        default=None, alias="OriginatorConversationID"
    )


class ReversalResponse(ConversationAck):
    pass
