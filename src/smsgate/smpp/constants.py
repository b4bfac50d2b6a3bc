"""SMPP 3.4 numbers: command ids, status codes, field values and TLV tags.

Every enumeration is an ``IntEnum`` so a member is usable wherever the wire wants an int
(PDU fields are plain ``int``; a peer may send values outside these lists and they must
survive decoding). Bit-field constants (esm_class, registered_delivery) are combined with
``|``; their masks are members too.
"""

from __future__ import annotations

from enum import IntEnum

HEADER_SIZE = 16
"""command_length, command_id, command_status, sequence_number: four 4-octet integers."""

INTERFACE_VERSION = 0x34
"""SMPP 3.4 §5.2.4: interface_version of a bind (and sc_interface_version of a bind_resp)."""

MAX_SEQUENCE_NUMBER = 0x7FFFFFFF
"""SMPP 3.4 §5.1.4: sequence numbers run from 1 to 0x7FFFFFFF and then wrap."""

RESPONSE_BIT = 0x80000000
"""SMPP 3.4 §5.1.2: a response's command_id is its request's with the top bit set."""


class CommandId(IntEnum):
    """SMPP 3.4 §5.1.2.1, table 5-1."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class CommandStatus(IntEnum):
    """SMPP 3.4 §5.1.3, table 5-2 (error codes). Peers may send vendor codes outside it."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


class Ton(IntEnum):
    """SMPP 3.4 §5.2.5: type of number."""

    UNKNOWN = 0x00
    INTERNATIONAL = 0x01
    NATIONAL = 0x02
    NETWORK_SPECIFIC = 0x03
    SUBSCRIBER_NUMBER = 0x04
    ALPHANUMERIC = 0x05
    ABBREVIATED = 0x06


class Npi(IntEnum):
    """SMPP 3.4 §5.2.6: numbering plan indicator."""

    UNKNOWN = 0x00
    ISDN = 0x01  # E.163/E.164
    DATA = 0x03  # X.121
    TELEX = 0x04  # F.69
    LAND_MOBILE = 0x06  # E.212
    NATIONAL = 0x08
    PRIVATE = 0x09
    ERMES = 0x0A
    INTERNET = 0x0E  # IP
    WAP_CLIENT_ID = 0x12


class EsmClass(IntEnum):
    """SMPP 3.4 §5.2.12: esm_class bits. Mode (bits 1-0), type (bits 5-2), GSM features (7-6).

    The zero-valued defaults of each group are aliases of one another; combine with ``|``.
    """

    MODE_DEFAULT = 0x00
    MODE_DATAGRAM = 0x01
    MODE_FORWARD = 0x02
    MODE_STORE_AND_FORWARD = 0x03
    MODE_MASK = 0x03
    TYPE_DEFAULT = 0x00
    # §5.2.12: bit 2 marks a delivery receipt in deliver_sm
    TYPE_DELIVERY_RECEIPT = 0x04
    TYPE_DELIVERY_ACK = 0x08
    TYPE_MANUAL_ACK = 0x10
    TYPE_CONVERSATION_ABORT = 0x18
    TYPE_INTERMEDIATE_NOTIFICATION = 0x20
    TYPE_MASK = 0x3C
    UDHI = 0x40
    REPLY_PATH = 0x80
    GSM_FEATURES_MASK = 0xC0


class RegisteredDelivery(IntEnum):
    """SMPP 3.4 §5.2.17: registered_delivery bits."""

    NO_RECEIPT = 0x00
    RECEIPT = 0x01  # SMSC delivery receipt on success or failure
    RECEIPT_ON_FAILURE = 0x02
    RECEIPT_MASK = 0x03
    SME_DELIVERY_ACK = 0x04
    SME_MANUAL_ACK = 0x08
    SME_ACK_MASK = 0x0C
    INTERMEDIATE_NOTIFICATION = 0x10


class DataCoding(IntEnum):
    """SMPP 3.4 §5.2.19: data_coding values (the ones that name an alphabet)."""

    SMSC_DEFAULT = 0x00  # usually GSM 03.38 7-bit
    IA5 = 0x01  # CCITT T.50 / ASCII
    OCTET_UNSPECIFIED = 0x02  # 8-bit binary
    LATIN_1 = 0x03  # ISO-8859-1
    OCTET_UNSPECIFIED_COMMON = 0x04  # 8-bit binary
    JIS = 0x05  # X 0208-1990
    CYRILLIC = 0x06  # ISO-8859-5
    LATIN_HEBREW = 0x07  # ISO-8859-8
    UCS2 = 0x08  # ISO/IEC-10646
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A  # music codes
    EXTENDED_KANJI_JIS = 0x0D  # X 0212-1990
    KS_C_5601 = 0x0E
    # GSM 03.38 "data coding / message class" group: 0xF0 | coding (bit 2) | class (bits 1-0)
    GSM_MESSAGE_CLASS = 0xF0


class PriorityFlag(IntEnum):
    """SMPP 3.4 §5.2.14."""

    LEVEL_0 = 0
    LEVEL_1 = 1
    LEVEL_2 = 2
    LEVEL_3 = 3


class ReplaceIfPresent(IntEnum):
    """SMPP 3.4 §5.2.18."""

    DO_NOT_REPLACE = 0
    REPLACE = 1


class DestFlag(IntEnum):
    """SMPP 3.4 §5.2.25: the kind of each destination of a submit_multi."""

    SME_ADDRESS = 1
    DISTRIBUTION_LIST = 2


class MessageState(IntEnum):
    """SMPP 3.4 §5.2.28: message_state of query_sm_resp and of the message_state TLV."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


class Tag(IntEnum):
    """SMPP 3.4 §5.3.2: optional parameter (TLV) tags."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class AddrSubunit(IntEnum):
    """SMPP 3.4 §5.3.2.1."""

    UNKNOWN = 0x00
    MS_DISPLAY = 0x01
    MOBILE_EQUIPMENT = 0x02
    SMART_CARD_1 = 0x03
    EXTERNAL_UNIT_1 = 0x04


class NetworkType(IntEnum):
    """SMPP 3.4 §5.3.2.3."""

    UNKNOWN = 0x00
    GSM = 0x01
    ANSI_136_TDMA = 0x02
    IS_95_CDMA = 0x03
    PDC = 0x04
    PHS = 0x05
    IDEN = 0x06
    AMPS = 0x07
    PAGING_NETWORK = 0x08


class BearerType(IntEnum):
    """SMPP 3.4 §5.3.2.5."""

    UNKNOWN = 0x00
    SMS = 0x01
    CSD = 0x02
    PACKET_DATA = 0x03
    USSD = 0x04
    CDPD = 0x05
    DATATAC = 0x06
    FLEX_REFLEX = 0x07
    CELL_BROADCAST = 0x08


class PayloadType(IntEnum):
    """SMPP 3.4 §5.3.2.10."""

    DEFAULT = 0x00
    WCMP = 0x01


class NetworkErrorType(IntEnum):
    """SMPP 3.4 §5.3.2.31: first octet of network_error_code."""

    ANSI_136 = 0x01
    IS_95 = 0x02
    GSM = 0x03


class DeliveryFailureReason(IntEnum):
    """SMPP 3.4 §5.3.2.33."""

    DESTINATION_UNAVAILABLE = 0x00
    DESTINATION_ADDRESS_INVALID = 0x01
    PERMANENT_NETWORK_ERROR = 0x02
    TEMPORARY_NETWORK_ERROR = 0x03


class MsAvailabilityStatus(IntEnum):
    """SMPP 3.4 §5.3.2.30."""

    AVAILABLE = 0x00
    DENIED = 0x01
    UNAVAILABLE = 0x02


class MoreMessagesToSend(IntEnum):
    """SMPP 3.4 §5.3.2.34."""

    NO_MORE_MESSAGES = 0x00
    MORE_MESSAGES = 0x01


class UssdServiceOp(IntEnum):
    """SMPP 3.4 §5.3.2.44."""

    PSSD_INDICATION = 0
    PSSR_INDICATION = 1
    USSR_REQUEST = 2
    USSN_REQUEST = 3
    PSSD_RESPONSE = 16
    PSSR_RESPONSE = 17
    USSR_CONFIRM = 18
    USSN_CONFIRM = 19
