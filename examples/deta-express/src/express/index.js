import express from 'express';
const app = express()

app.get('/', (req, res) => {
  res.send('Hello world using Express.')
})

app.get('/ping', (req, res) => {
	res.send('pong')
})

const port = parseInt(process.env.PORT) || 8080
app.listen(port, () => {
  console.log(`Running on port ${port}`)
})
