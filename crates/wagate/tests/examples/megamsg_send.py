import requests
resp = requests.post(
'https://megamsg.app/api/whatsapp/messages/send',
headers={
'Authorization': 'Bearer YOUR_TOKEN',
'X-Instance-Id': 'YOUR_INSTANCE_ID',
},
json={
'phone_number': '+201234567890',
'type': 'text',
'text': 'Hello from MegaMsg! 🚀',
}
)
data = resp.json()
