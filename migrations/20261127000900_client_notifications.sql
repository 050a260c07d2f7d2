-- Client notifications (SPEC §2): what a tenant wants its bookings' clients
-- to hear, and every message to a client, one row each, sent by the
-- workers and listed per booking.

create table client_notification_settings (
    tenant_id        text        primary key,
    enabled          boolean     not null default false,
    -- When they were last turned on: only events recorded since then are
    -- told to clients (a reactor catching up must not mail about the past).
    enabled_since    timestamptz,
    -- Reminders go out this long before a confirmed booking starts, in
    -- seconds, largest first.
    reminder_offsets integer[]   not null default '{}',
    -- The From of the messages (`Name <address>`); null: the server's.
    sender           text,
    updated_at       timestamptz not null default now()
);

create table client_messages (
    tenant_id      text        not null,
    message_id     uuid        not null,
    booking_id     uuid        not null,
    kind           text        not null
                   check (kind in ('confirmation', 'change', 'cancellation', 'reminder')),
    -- The event that caused it: a message is made once per event (and,
    -- for reminders, per due time).
    event_position bigint      not null,
    recipient      text        not null,
    -- When it may go out (now, or a reminder's time).
    due_at         timestamptz not null,
    -- A reminder is sent only if the booking is still confirmed and still
    -- starts at this instant.
    reminds_of     timestamptz,
    -- The calendar invitation's SEQUENCE.
    sequence       integer     not null,
    status         text        not null default 'pending'
                   check (status in ('pending', 'sent', 'dead', 'skipped')),
    attempts       integer     not null default 0,
    last_error     text,
    created_at     timestamptz not null default now(),
    sent_at        timestamptz,
    primary key (tenant_id, message_id),
    unique (tenant_id, booking_id, event_position, kind, due_at)
);
create index client_messages_by_booking on client_messages (tenant_id, booking_id, created_at);
