'use strict';
// A small SMSC written with the npm `smpp` package: an independent peer for smsgate's
// interoperability tests (tests/interop/npm_smsc).
//
//   node smsc.js PORT SYSTEM_ID PASSWORD      (PORT 0: any free port)
//
// stdout: one JSON object per line, an event:
//   {"event": "listening", "port": N}
//   {"event": "bind", "command": "bind_transceiver", "system_id": ..., "system_type": ...}
//   {"event": "submit_sm", "message_id": ..., fields as the package decoded them}
//   {"event": "deliver_sm_resp", "ref": ..., "command_status": N}
//   {"event": "error", "message": ...}
// stdin: one JSON command per line:
//   {"cmd": "deliver", "ref": "any", "fields": {deliver_sm fields; short_message_hex for the
//    raw octets of short_message}}
// submit_sm is answered with a fresh hexadecimal message_id.

const smpp = require('smpp');
const readline = require('readline');

const [portArg, systemId, password] = process.argv.slice(2);
let nextMessageId = 0x10000;
let receiver = null; // the session that takes deliver_sm: a transceiver or a receiver

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function hex(value) {
  return Buffer.isBuffer(value) ? value.toString('hex') : null;
}

function text(value) {
  if (value === undefined || value === null) return null;
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') };
  if (typeof value === 'string') return value;
  return typeof value.message === 'string' ? value.message : { hex: hex(value.message) };
}

const server = smpp.createServer({ debug: false }, (session) => {
  session.on('error', (error) => emit({ event: 'error', message: String(error) }));

  const bind = (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'npm-smsc' }));
    if (pdu.command !== 'bind_transmitter') receiver = session;
    emit({
      event: 'bind',
      command: pdu.command,
      system_id: pdu.system_id,
      system_type: pdu.system_type,
    });
  };
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);

  session.on('submit_sm', (pdu) => {
    const messageId = (nextMessageId++).toString(16);
    session.send(pdu.response({ message_id: messageId }));
    const body = pdu.short_message || {};
    emit({
      event: 'submit_sm',
      message_id: messageId,
      source_addr_ton: pdu.source_addr_ton,
      source_addr_npi: pdu.source_addr_npi,
      source_addr: pdu.source_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      destination_addr: pdu.destination_addr,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      message: text(body),
      udh: (body.udh || []).map(hex),
      sar_msg_ref_num: pdu.sar_msg_ref_num === undefined ? null : pdu.sar_msg_ref_num,
      sar_total_segments: pdu.sar_total_segments === undefined ? null : pdu.sar_total_segments,
      sar_segment_seqnum: pdu.sar_segment_seqnum === undefined ? null : pdu.sar_segment_seqnum,
      message_payload: text(pdu.message_payload),
    });
  });

  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('close', () => {
    if (receiver === session) receiver = null;
  });
});

function deliver(command) {
  if (receiver === null) {
    emit({ event: 'deliver_sm_resp', ref: command.ref, command_status: -1 });
    return;
  }
  const fields = Object.assign({}, command.fields);
  if (fields.short_message_hex !== undefined) {
    fields.short_message = Buffer.from(fields.short_message_hex, 'hex');
    delete fields.short_message_hex;
  }
  receiver.deliver_sm(fields, (pdu) => {
    emit({ event: 'deliver_sm_resp', ref: command.ref, command_status: pdu.command_status });
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.cmd === 'deliver') deliver(command);
  else emit({ event: 'error', message: 'unknown command ' + command.cmd });
});

process.stdin.on('end', () => {
  server.close();
  process.exit(0);
});

server.listen(Number(portArg || 0), '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});
