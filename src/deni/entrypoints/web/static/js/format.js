// What people read: money as "KES 1,250", dates as "3 Jan 2027", in Nairobi's calendar.
// Money stays integer cents everywhere; only these functions turn it into text and back.

const MONTHS = {
  en: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
  sw: ["Jan", "Feb", "Mac", "Apr", "Mei", "Jun", "Jul", "Ago", "Sep", "Okt", "Nov", "Des"],
};
const NAIROBI_OFFSET_MS = 3 * 60 * 60 * 1000; // East Africa Time, UTC+3, no daylight saving
const DAY_MS = 24 * 60 * 60 * 1000;
export const AMOUNT_CENTS_MAX = 25_000_000; // KES 250,000, the largest loan the server takes

function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function kes(amountCents) {
  console.assert(Number.isInteger(amountCents), "amounts are integer cents", amountCents);
  const sign = amountCents < 0 ? "-" : "";
  const cents = Math.abs(amountCents);
  const shillings = groupThousands(String(Math.floor(cents / 100)));
  const rest = cents % 100;
  return rest === 0
    ? `${sign}KES ${shillings}`
    : `${sign}KES ${shillings}.${String(rest).padStart(2, "0")}`;
}

// Cents as someone would type them in an amount field: "1050", or "1050.50".
export function amountText(amountCents) {
  console.assert(Number.isInteger(amountCents) && amountCents >= 0, "cents", amountCents);
  const rest = amountCents % 100;
  const shillings = String(Math.floor(amountCents / 100));
  return rest === 0 ? shillings : `${shillings}.${String(rest).padStart(2, "0")}`;
}

// "1,250" or "1250.50" to cents, read as text so no float ever rounds a shilling away.
// Returns null for anything that is not a positive amount of at most two decimals.
export function parseKes(text, { wholeShillings = false } = {}) {
  const cleaned = String(text).trim().replace(/^KES\s*/i, "").replace(/,/g, "");
  const match = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(cleaned);
  if (match === null) return null;
  if (wholeShillings && match[2] !== undefined && Number(match[2]) !== 0) return null;
  const cents = Number(match[1]) * 100 + Number((match[2] ?? "0").padEnd(2, "0"));
  return cents > 0 && cents <= AMOUNT_CENTS_MAX ? cents : null;
}

export function nairobiToday(now = new Date()) {
  return new Date(now.getTime() + NAIROBI_OFFSET_MS).toISOString().slice(0, 10);
}

export function addDays(isoDate, days) {
  const at = Date.parse(`${isoDate}T00:00:00Z`) + days * DAY_MS;
  return new Date(at).toISOString().slice(0, 10);
}

export function longDate(isoDate, language = "en") {
  if (!isoDate) return "";
  const [year, month, day] = isoDate.slice(0, 10).split("-").map(Number);
  return `${day} ${(MONTHS[language] ?? MONTHS.en)[month - 1]} ${year}`;
}

export function shortTime(isoTimestamp, language = "en") {
  const local = new Date(Date.parse(isoTimestamp) + NAIROBI_OFFSET_MS).toISOString();
  return `${longDate(local.slice(0, 10), language)}, ${local.slice(11, 16)}`;
}

// Kenyan numbers as people type them: 0712 345 678, +254712345678, 254712345678.
export function normalisePhone(text) {
  const digits = String(text).replace(/[\s-]/g, "");
  const match = /^(?:\+?254|0)([17]\d{8})$/.exec(digits);
  return match === null ? null : `254${match[1]}`;
}

export function shownPhone(msisdn) {
  return msisdn && msisdn.startsWith("254") ? `0${msisdn.slice(3)}` : msisdn ?? "";
}
