// A mail-sending application as most are written: JavaMail (Jakarta Mail)
// with its defaults, one message to several recipients. With
// mail.smtp.sendpartial false (the default), one recipient refused at RCPT
// makes JavaMail abandon the whole message (SendFailedException): what the
// relay's fan-out spares such applications (relay/tests/senders.rs).
//
//   java -cp ... Send HOST PORT FROM TO[,TO...] SUBJECT
import jakarta.mail.Address;
import jakarta.mail.Message;
import jakarta.mail.SendFailedException;
import jakarta.mail.Session;
import jakarta.mail.Transport;
import jakarta.mail.internet.InternetAddress;
import jakarta.mail.internet.MimeMessage;
import java.util.Properties;

public class Send {
    static void print(String what, Address[] addresses) {
        for (Address a : addresses == null ? new Address[0] : addresses) {
            System.out.println(what + ": " + a);
        }
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("mail.smtp.host", args[0]);
        props.put("mail.smtp.port", args[1]);
        props.put("mail.smtp.localhost", "javamail.test");
        Session session = Session.getInstance(props);
        MimeMessage message = new MimeMessage(session);
        message.setFrom(new InternetAddress(args[2]));
        for (String to : args[3].split(",")) {
            message.addRecipient(Message.RecipientType.TO, new InternetAddress(to));
        }
        message.setSubject(args[4]);
        message.setText("Sent by JavaMail with its default settings.\n");
        try {
            Transport.send(message);
            System.out.println("sent");
        } catch (SendFailedException e) {
            System.out.println("not sent: " + e.getMessage());
            print("invalid", e.getInvalidAddresses());
            print("valid, unsent", e.getValidUnsentAddresses());
            print("sent", e.getValidSentAddresses());
            for (Exception n = e.getNextException(); n != null; ) {
                System.out.println("because: " + n.getMessage().trim());
                n = n instanceof jakarta.mail.MessagingException m ? m.getNextException() : null;
            }
            System.exit(3);
        }
    }
}
