const res = await fetch('https://megamsg.app/api/whatsapp/messages/send', {
method: 'POST',
headers: {
'Authorization': 'Bearer YOUR_TOKEN',
'X-Instance-Id': 'YOUR_INSTANCE_ID',
'Content-Type': 'application/json',
},
body: JSON.stringify({
phone_number: '+201234567890',
type: 'text',
text: 'Hello from MegaMsg! 🚀',
}),
});
const data = await res.json();
