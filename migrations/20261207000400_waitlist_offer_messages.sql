-- A waitlist offer is told to the entry's client (SPEC §12): a client
-- message is now about a booking or about a waitlist entry, one of the
-- two, and an offer is made once per `waitlist.offered` event.
alter table client_messages alter column booking_id drop not null;
alter table client_messages add column entry_id uuid;
alter table client_messages drop constraint client_messages_kind_check;
alter table client_messages add constraint client_messages_kind_check
    check (kind in ('confirmation', 'change', 'cancellation', 'reminder', 'offer'));
alter table client_messages add constraint client_messages_about_one
    check ((booking_id is null) <> (entry_id is null));
create unique index client_messages_offer_once
    on client_messages (tenant_id, entry_id, event_position) where entry_id is not null;
