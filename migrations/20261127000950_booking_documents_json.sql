-- A booking's document is written whole and served whole, never queried
-- inside: `json` keeps the bytes muster wrote, where `jsonb` parsed them on
-- every write and printed them again on every GET. (Rewrites the table
-- once.)
alter table read.bookings alter column document type json using document::json;
