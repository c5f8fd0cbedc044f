// The suite's reference server, exactly as its README sets it up for Node (socket.io 4.x), on PORT: the control
// run of compat-tests/protocol-suite.test.js.
import { Server } from 'socket.io';
const io = new Server(Number(process.env.PORT), { pingInterval: 300, pingTimeout: 200, maxPayload: 1000000, connectTimeout: 1000, cors: { origin: '*' } });
io.on('connection', (socket) => {
  socket.emit('auth', socket.handshake.auth);
  socket.on('message', (...args) => { socket.emit.apply(socket, ['message-back', ...args]); });
  socket.on('message-with-ack', (...args) => { const ack = args.pop(); ack(...args); });
});
io.of('/custom').on('connection', (socket) => { socket.emit('auth', socket.handshake.auth); });
